package listener_test

import (
	"io"
	"net"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func echoBackend(t testing.TB, ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// A port without an HTTP filter chain is relayed as TCP to the pod.
func TestOpaquePassthrough(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": echoBackend})
	p := e.pods["10.244.2.12"]
	s, err := e.dial(t.Context(), sleepID, p.backend.String())
	if err != nil {
		t.Fatalf("tunnel to opaque port %v: %v", p.backend, err)
	}
	defer s.Close()
	msg := strings.Repeat("not http\r\n", 1000)
	if _, err := io.WriteString(s, msg); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through the waypoint: %d bytes, %v; want %d bytes", len(got), err, len(msg))
	}
	// An opaque port of an address nobody serves is refused with 503.
	dead := closedPort(t)
	if _, err := e.dial(t.Context(), sleepID, dead.String()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("tunnel to a dead address: %v, want 503", err)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, "authz", map[string]backend{"10.244.1.41": whoami("productpage"), "10.244.1.42": whoami("ratings")})
	c := e.httpClient(sleepID, "10.96.0.41:9080")
	for range 3 {
		if code, _, _ := get(t, c, "GET", "http://ratings:9080/public"); code != 200 {
			t.Fatal(code)
		}
	}
	if code, _, _ := get(t, c, "POST", "http://ratings:9080/admin"); code != 403 {
		t.Fatal(code)
	}
	ok := map[string]string{
		"reporter": "waypoint", "response_code": "200", "request_protocol": "http",
		"source_principal": "spiffe://cluster.local/ns/default/sa/sleep", "source_workload": "sleep", "source_workload_namespace": "default",
		"destination_service": "ratings.default.svc.cluster.local", "destination_service_name": "ratings", "destination_service_namespace": "default",
		"destination_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-ratings", "response_flags": "-", "grpc_response_status": "-",
	}
	denied := map[string]string{"response_code": "403", "response_flags": "RBAC", "source_principal": "spiffe://cluster.local/ns/default/sa/sleep"}
	if got := e.counter(t, "istio_requests_total", ok); got != 3 {
		t.Errorf("istio_requests_total%v = %v, want 3", ok, got)
	}
	if got := e.counter(t, "istio_requests_total", denied); got != 1 {
		t.Errorf("istio_requests_total%v = %v, want 1", denied, got)
	}
	if got := e.counter(t, "istio_request_duration_milliseconds", ok); got != 3 {
		t.Errorf("duration samples = %v, want 3", got)
	}
	if got := e.counter(t, "istio_response_bytes", ok); got != 3 {
		t.Errorf("response size samples = %v, want 3", got)
	}
}

// counter sums the counter values (or histogram sample counts) of name
// over the series whose labels include want.
func (e *env) counter(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if !hasLabels(m, want) {
				continue
			}
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			}
			if m.Histogram != nil {
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.Label {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
