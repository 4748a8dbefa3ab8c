package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConnMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	c := Conn{
		Reporter:    ReporterDestination,
		Source:      Peer{Workload: "sleep", Namespace: "default", Principal: "spiffe://cluster.local/ns/default/sa/sleep", CanonicalService: "sleep", CanonicalRevision: "latest"},
		Destination: Peer{Workload: "httpbin", Namespace: "default", Principal: "spiffe://cluster.local/ns/default/sa/httpbin"},
		ServiceHost: "httpbin.default.svc.cluster.local", ServiceNamespace: "default", ServiceName: "httpbin",
		Security: "mutual_tls",
	}
	r := m.Open(c)
	r.Received(100)
	r.Sent(250)
	r.Close()
	r2 := m.Open(c)
	r2.Received(1)

	if got := testutil.ToFloat64(m.opened.WithLabelValues(c.values()...)); got != 2 {
		t.Errorf("opened = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.closed.WithLabelValues(c.values()...)); got != 1 {
		t.Errorf("closed = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.received.WithLabelValues(c.values()...)); got != 101 {
		t.Errorf("received = %v, want 101", got)
	}
	const want = `istio_tcp_sent_bytes_total{connection_security_policy="mutual_tls",destination_app="unknown",destination_canonical_revision="unknown",destination_canonical_service="unknown",destination_cluster="unknown",destination_principal="spiffe://cluster.local/ns/default/sa/httpbin",destination_service="httpbin.default.svc.cluster.local",destination_service_name="httpbin",destination_service_namespace="default",destination_version="unknown",destination_workload="httpbin",destination_workload_namespace="default",reporter="destination",request_protocol="tcp",response_flags="-",source_app="sleep",source_canonical_revision="latest",source_canonical_service="sleep",source_cluster="unknown",source_principal="spiffe://cluster.local/ns/default/sa/sleep",source_version="latest",source_workload="sleep",source_workload_namespace="default"} 250`
	if err := testutil.GatherAndCompare(reg, strings.NewReader("# HELP istio_tcp_sent_bytes_total The size of total bytes sent during response in case of a TCP connection\n# TYPE istio_tcp_sent_bytes_total counter\n"+want+"\n"), "istio_tcp_sent_bytes_total"); err != nil {
		t.Fatal(err)
	}
}
