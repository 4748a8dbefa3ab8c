package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reporter values.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// labelNames are Istio's standard TCP metric labels, in a fixed order.
var labelNames = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_service", "destination_service_namespace", "destination_service_name",
	"destination_workload", "destination_canonical_service", "destination_canonical_revision",
	"destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
	"destination_cluster", "request_protocol", "response_flags", "connection_security_policy",
}

// Peer describes one side of a connection for the metric labels.
type Peer struct {
	Workload, CanonicalService, CanonicalRevision, Namespace, Principal, Cluster string
}

// Conn are the labels of one connection.
type Conn struct {
	Reporter    string
	Source      Peer
	Destination Peer
	// Destination service (may be empty when the destination is a workload address).
	ServiceHost, ServiceNamespace, ServiceName string
	// Security is "mutual_tls" or "unknown" (plaintext).
	Security string
	// ResponseFlags as Istio: "-" for none, "DENY" etc.
	ResponseFlags string
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// values returns the label values in labelNames order.
func (c Conn) values() []string {
	flags := c.ResponseFlags
	if flags == "" {
		flags = "-"
	}
	return []string{
		c.Reporter,
		orUnknown(c.Source.Workload), orUnknown(c.Source.CanonicalService), orUnknown(c.Source.CanonicalRevision),
		orUnknown(c.Source.Namespace), orUnknown(c.Source.Principal), orUnknown(c.Source.CanonicalService),
		orUnknown(c.Source.CanonicalRevision), orUnknown(c.Source.Cluster),
		orUnknown(c.ServiceHost), orUnknown(c.ServiceNamespace), orUnknown(c.ServiceName),
		orUnknown(c.Destination.Workload), orUnknown(c.Destination.CanonicalService), orUnknown(c.Destination.CanonicalRevision),
		orUnknown(c.Destination.Namespace), orUnknown(c.Destination.Principal), orUnknown(c.Destination.CanonicalService),
		orUnknown(c.Destination.CanonicalRevision), orUnknown(c.Destination.Cluster),
		"tcp", flags, orUnknown(c.Security),
	}
}

// Metrics holds ztunnel's counters.
type Metrics struct {
	opened, closed, sent, received *prometheus.CounterVec
	connectRetries                 prometheus.Counter
}

// New registers the TCP metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	mk := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames)
		reg.MustRegister(c)
		return c
	}
	retries := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ztunnel_connect_retries_total",
		Help: "Outbound connections retried on another endpoint after the first could not be reached",
	})
	reg.MustRegister(retries)
	return &Metrics{
		connectRetries: retries,
		opened:         mk("istio_tcp_connections_opened_total", "The total number of TCP connections opened"),
		closed:         mk("istio_tcp_connections_closed_total", "The total number of TCP connections closed"),
		sent:           mk("istio_tcp_sent_bytes_total", "The size of total bytes sent during response in case of a TCP connection"),
		received:       mk("istio_tcp_received_bytes_total", "The size of total bytes received during request in case of a TCP connection"),
	}
}

// ConnectRetry counts one outbound connection attempt moved to another
// endpoint after a failure to connect.
func (m *Metrics) ConnectRetry() { m.connectRetries.Inc() }

// ConnRecorder tracks one connection's metrics: opened now, bytes as they flow,
// closed once.
type ConnRecorder struct {
	sent, received prometheus.Counter
	closed         prometheus.Counter
}

// Open counts a new connection and returns its recorder.
func (m *Metrics) Open(c Conn) *ConnRecorder {
	v := c.values()
	m.opened.WithLabelValues(v...).Inc()
	return &ConnRecorder{
		sent:     m.sent.WithLabelValues(v...),
		received: m.received.WithLabelValues(v...),
		closed:   m.closed.WithLabelValues(v...),
	}
}

// Sent adds bytes sent to the client (response direction).
func (r *ConnRecorder) Sent(n int64) { r.sent.Add(float64(n)) }

// Received adds bytes received from the client (request direction).
func (r *ConnRecorder) Received(n int64) { r.received.Add(float64(n)) }

// Close counts the connection as closed.
func (r *ConnRecorder) Close() { r.closed.Inc() }
