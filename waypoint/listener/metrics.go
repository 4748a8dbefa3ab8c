package listener

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Metrics are Istio's standard HTTP metrics, reported by the waypoint.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec

	// series caches the four children of each label set: resolving them
	// (formatting the values, hashing them, four map lookups) cost more
	// than the observations. Series are never deleted from the vectors.
	series sync.Map // RequestLabels → *requestSeries
}

// requestSeries are the metrics of one label set.
type requestSeries struct {
	requests                      prometheus.Counter
	duration, reqBytes, respBytes prometheus.Observer
}

// Labels of the request metrics, Istio's names.
var metricLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	ms := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	sizes := prometheus.ExponentialBuckets(1, 10, 9)
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total",
			Help: "Requests handled by the waypoint."}, metricLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds",
			Help: "Request duration as seen by the waypoint.", Buckets: ms}, metricLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_bytes",
			Help: "Request body sizes.", Buckets: sizes}, metricLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_response_bytes",
			Help: "Response body sizes.", Buckets: sizes}, metricLabels),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.reqBytes, m.respBytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register waypoint metrics: %w", err)
		}
	}
	return m, nil
}

// RequestLabels are the label values of one request.
type RequestLabels struct {
	Source             spiffe.Identity
	DestinationService string // hostname, e.g. reviews.default.svc.cluster.local
	Destination        spiffe.Identity
	GRPC               bool
	Code               int
	GRPCStatus         string // "" when none
	Flags              string
}

// Values returns the label values in metricLabels order. Workload names
// are not carried by HBONE: the service account stands for the workload.
func (r RequestLabels) Values() []string {
	unknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	principal := func(id spiffe.Identity) string {
		if id.IsZero() {
			return "unknown"
		}
		return id.String()
	}
	svcName, svcNS := "unknown", "unknown"
	if h := r.DestinationService; h != "" {
		svcName = h
		if i := indexByte(h, '.'); i > 0 {
			svcName = h[:i]
			rest := h[i+1:]
			if j := indexByte(rest, '.'); j > 0 {
				svcNS = rest[:j]
			} else {
				svcNS = rest
			}
		}
	}
	proto := "http"
	if r.GRPC {
		proto = "grpc"
	}
	gs := r.GRPCStatus
	if gs == "" {
		gs = "-"
	}
	return []string{
		"waypoint",
		unknown(r.Source.ServiceAccount), unknown(r.Source.Namespace), principal(r.Source),
		unknown(r.DestinationService), svcName, svcNS,
		unknown(r.Destination.ServiceAccount), unknown(r.Destination.Namespace), principal(r.Destination),
		proto, strconv.Itoa(r.Code), gs, r.Flags,
		"mutual_tls",
	}
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func (m *Metrics) observe(l RequestLabels, ms float64, reqBytes, respBytes int64) {
	if m == nil {
		return
	}
	s, ok := m.series.Load(l)
	if !ok {
		v := l.Values()
		s, _ = m.series.LoadOrStore(l, &requestSeries{
			requests:  m.requests.WithLabelValues(v...),
			duration:  m.duration.WithLabelValues(v...),
			reqBytes:  m.reqBytes.WithLabelValues(v...),
			respBytes: m.respBytes.WithLabelValues(v...),
		})
	}
	rs := s.(*requestSeries)
	rs.requests.Inc()
	rs.duration.Observe(ms)
	rs.reqBytes.Observe(float64(reqBytes))
	rs.respBytes.Observe(float64(respBytes))
}
