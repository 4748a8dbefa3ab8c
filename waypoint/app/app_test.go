package app

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

// TestLocalMode runs the waypoint on a relocated golden xDS output with a
// local CA, sends requests through it over HBONE and reads its admin,
// metrics and readiness endpoints.
func TestLocalMode(t *testing.T) {
	res := statetest.MustLoad(t, "weights")
	pods := newPods(t, res, map[string]http.Handler{"10.244.1.11": named("v1"), "10.244.2.12": named("v2")})
	cfg := parse(t, "--local-config="+writeResources(t, res), "--ca=local")
	a := start(t, cfg)
	ca := a.LocalCA()
	if ca == nil {
		t.Fatal("LocalCA() = nil with --ca=local")
	}
	pods.ca.Store(ca)
	waitReady(t, a.App)

	// The authority is the service VIP: reviews-v1 (10.96.0.21) routes to
	// pod v1 only, reviews-v2 (10.96.0.22) to v2 only.
	for authority, want := range map[string]string{"10.96.0.21:9080": "v1", "10.96.0.22:9080": "v2"} {
		c := viaWaypoint(t, ca, a.Addrs().HBONE, authority)
		for range 3 {
			res, err := c.Get("http://reviews/")
			if err != nil {
				t.Fatalf("GET via waypoint to %s: %v", authority, err)
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK || string(b) != want {
				t.Fatalf("GET via waypoint to %s = %d %q (%v), want 200 %q", authority, res.StatusCode, b, err, want)
			}
		}
	}

	code, body := httpGet(t, "http://"+a.Addrs().Admin.String()+"/config_dump")
	if code != http.StatusOK {
		t.Fatalf("/config_dump = %d %s", code, body)
	}
	var dump struct {
		Listeners, Routes, Clusters, Endpoints resourceSummary
		Certificates                           []struct{ Identity, State string }
		XDS                                    map[string]any
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("/config_dump: %v\n%s", err, body)
	}
	if dump.Listeners.Count != 1 || dump.Listeners.Names[0] != "waypoint" || dump.Routes.Count != 1 || dump.Clusters.Count != 3 || dump.Endpoints.Count != 3 {
		t.Errorf("/config_dump resources = %+v %+v %+v %+v", dump.Listeners, dump.Routes, dump.Clusters, dump.Endpoints)
	}
	if len(dump.Certificates) != 1 || dump.Certificates[0].Identity != "spiffe://cluster.local/ns/default/sa/waypoint" || dump.Certificates[0].State != "available" {
		t.Errorf("/config_dump certificates = %+v", dump.Certificates)
	}
	if dump.XDS["loaded"] != true {
		t.Errorf("/config_dump xds = %v, want loaded", dump.XDS)
	}

	code, body = httpGet(t, "http://"+a.Addrs().Metrics.String()+"/stats/prometheus")
	if code != http.StatusOK || !strings.Contains(body, `istio_requests_total{`) || !strings.Contains(body, `destination_service="reviews-v1.default.svc.cluster.local"`) {
		t.Errorf("/stats/prometheus = %d, want istio_requests_total for reviews-v1:\n%s", code, body)
	}
	for _, want := range []string{
		"waypoint_certificate_fetches_total 1", "waypoint_certificate_renewal_failures_total 0",
		`waypoint_certificate_expiry_seconds{identity="spiffe://cluster.local/ns/default/sa/waypoint"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/stats/prometheus lacks %s", want)
		}
	}
	if code, _ := httpGet(t, "http://"+a.Addrs().Metrics.String()+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics = %d", code)
	}
	code, body = httpGet(t, "http://"+a.Addrs().Admin.String()+"/logging?level=debug")
	if code != http.StatusOK || !strings.Contains(body, "debug") {
		t.Errorf("/logging = %d %q", code, body)
	}

	// Draining: readiness turns 503 once Run is told to stop. Run blocks
	// until the drain ends, so check from the App directly afterwards.
	a.stop()
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("Ready after stop = %v, want draining", err)
	}
}

func TestNewRefusesBadLocalConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listeners:\n- name: l\n  filter_chains:\n  - filters:\n    - name: x\n      typed_config:\n        '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n        stat_prefix: s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tt := range map[string]struct{ path, want string }{
		"missing file":     {filepath.Join(dir, "nope.yaml"), "read local config"},
		"not resources":    {writeFile(t, dir, "x.yaml", "listeners: 3\n"), "want an object"},
		"bad resource":     {writeFile(t, dir, "y.yaml", "clusters:\n- name: c\n  nosuchfield: 1\n"), "clusters[0]"},
		"refused by state": {bad, "without rds"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := parse(t, "--local-config="+tt.path, "--ca=local")
			a, err := New(cfg, zapTest(t), zapLevel())
			if err == nil {
				a.closeAll()
				t.Fatalf("New accepted %s", tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGracefulDrain stops the waypoint while a request is in flight:
// readiness turns 503 and the HBONE port stops accepting at once, the
// request still completes, and Run returns once it has.
func TestGracefulDrain(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "slow")
	})
	res := statetest.MustLoad(t, "weights")
	pods := newPods(t, res, map[string]http.Handler{"10.244.1.11": slow, "10.244.2.12": named("v2")})
	a := start(t, parse(t, "--local-config="+writeResources(t, res), "--ca=local", "--drain-timeout=1m"))
	pods.ca.Store(a.LocalCA())
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the App's cleanup stops it
	waitReady(t, a.App)

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := viaWaypoint(t, a.LocalCA(), a.Addrs().HBONE, "10.96.0.21:9080").Get("http://reviews/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{string(b), err}
	}()
	<-arrived
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.stop()
	}()

	readyURL := "http://" + a.Addrs().Ready.String() + "/healthz/ready"
	waitFor(t, "readiness 503 while draining", func() bool { code, _ := httpGet(t, readyURL); return code == http.StatusServiceUnavailable })
	waitFor(t, "HBONE port closed", func() bool {
		c, err := net.DialTimeout("tcp", a.Addrs().HBONE.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case <-stopped:
		t.Fatal("Run returned while a request was in flight")
	default:
	}
	releaseOnce()
	if r := <-got; r.err != nil || r.body != "slow" {
		t.Errorf("in-flight request = %q, %v; want it to complete", r.body, r.err)
	}
	<-stopped
}
