package listener_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambient-mesh/ambient/waypoint/listener"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// slowOrFlaky: /slow waits for the request to be abandoned (or 10 s);
// /flaky fails every other request with 503.
func slowOrFlaky(calls *atomic.Int64) backend {
	return httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "late")
		case "/flaky":
			b, _ := io.ReadAll(r.Body)
			if n%2 == 1 {
				http.Error(w, "flaky", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok "+string(b))
		default:
			io.WriteString(w, "ok")
		}
	}))
}

func TestTimeout(t *testing.T) {
	var calls atomic.Int64
	e := newEnv(t, "timeout-retry", map[string]backend{"10.244.1.11": slowOrFlaky(&calls)})
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	start := time.Now()
	code, body, _ := get(t, c, "GET", reviews+"/slow")
	if code != http.StatusGatewayTimeout || body != "upstream request timeout" {
		t.Fatalf("slow backend: %d %q, want 504 upstream request timeout", code, body)
	}
	// The per-try timeout (0.5 s) ends the attempt well before the backend's 10 s.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v", d)
	}
	if code, body, _ := get(t, c, "GET", reviews+"/"); code != 200 || body != "ok" {
		t.Errorf("after a timeout: %d %q", code, body)
	}
}

func TestRouteTimeout(t *testing.T) {
	var calls atomic.Int64
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": slowOrFlaky(&calls), "10.244.2.12": slowOrFlaky(&calls)},
		withResources(func(r state.Resources) {
			for _, vh := range r.Routes[0].VirtualHosts {
				vh.Routes[0].GetRoute().Timeout = durationpb.New(200 * time.Millisecond)
			}
		}))
	c := e.httpClient(sleepID, "10.96.0.21:9080")
	code, body, _ := get(t, c, "GET", "http://reviews-v1:9080/slow")
	if code != http.StatusGatewayTimeout || body != "upstream request timeout" {
		t.Fatalf("route timeout: %d %q, want 504", code, body)
	}
}

func TestRetries(t *testing.T) {
	var calls atomic.Int64
	e := newEnv(t, "timeout-retry", map[string]backend{"10.244.1.11": slowOrFlaky(&calls)},
		withConfig(func(c *listener.Config) { c.Outlier.Consecutive5xx = 1 << 30 }))
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	const n = 10
	for i := range n {
		var code int
		var body string
		if i%2 == 0 {
			code, body, _ = get(t, c, "GET", reviews+"/flaky")
		} else {
			res, err := c.Post(reviews+"/flaky", "text/plain", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			code, body = res.StatusCode, string(b)
			if code == 200 && body != "ok payload" {
				t.Errorf("retried POST body: %q", body)
			}
		}
		if code != 200 {
			t.Fatalf("request %d: %d %q, want 200 after a retry", i, code, body)
		}
	}
	if got := calls.Load(); got != 2*n {
		t.Errorf("backend saw %d requests, want %d (one retry each)", got, 2*n)
	}
}

func TestConnectFailureRetryAndOutlier(t *testing.T) {
	// reviews has two endpoints; only 10.244.2.12 runs. Connect failures
	// to the other are retried, then it is ejected.
	e := newEnv(t, "weights", map[string]backend{"10.244.2.12": whoami("v2")},
		withConfig(func(c *listener.Config) {
			c.Outlier = state.Outlier{Consecutive5xx: 2, BaseEjection: time.Hour, MaxEjectionPercent: 50}
		}),
		withResources(func(r state.Resources) {
			for _, vh := range r.Routes[0].VirtualHosts {
				rt := vh.Routes[0].GetRoute()
				if rt.GetWeightedClusters() != nil {
					rt.ClusterSpecifier = routeCluster("outbound|9080||reviews.default.svc.cluster.local")
					rt.RetryPolicy = retryOn("connect-failure", 2)
				}
			}
		}))
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	for i := range 20 {
		if code, body, _ := get(t, c, "GET", reviews+"/"); code != 200 || body != "v2" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
}

func TestFault(t *testing.T) {
	e := newEnv(t, "fault", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")},
		withResources(func(r state.Resources) {
			for _, vh := range r.Routes[0].VirtualHosts {
				for _, rt := range vh.Routes {
					a := rt.TypedPerFilterConfig["envoy.filters.http.fault"]
					if a == nil {
						continue
					}
					f := &faultv3.HTTPFault{}
					if err := a.UnmarshalTo(f); err != nil {
						panic(err)
					}
					f.Delay.FaultDelaySecifier = &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(10 * time.Millisecond)}
					rt.TypedPerFilterConfig["envoy.filters.http.fault"], _ = anypb.New(f)
				}
			}
		}))
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	aborts := 0
	const n = 200
	for range n {
		code, body, _ := get(t, c, "GET", reviews+"/")
		switch {
		case code == 503 && body == "fault filter abort":
			aborts++
		case code == 200 && body == "v1":
		default:
			t.Fatalf("unexpected answer %d %q", code, body)
		}
	}
	if aborts < n*4/100 || aborts > n*18/100 {
		t.Errorf("%d of %d aborted, want about 10%%", aborts, n)
	}
	// The service without fault config is not affected.
	v2 := e.httpClient(sleepID, "10.96.0.22:9080")
	for range 20 {
		if code, _, _ := get(t, v2, "GET", reviews+"/"); code != 200 {
			t.Fatalf("reviews-v2: %d", code)
		}
	}
}

func TestMissingBackend(t *testing.T) {
	e := newEnv(t, "missing-backend", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	if code, _, _ := get(t, c, "GET", reviews+"/only-missing/x"); code != 500 {
		t.Errorf("/only-missing = %d, want 500", code)
	}
	counts := map[int]int{}
	for range 200 {
		code, _, _ := get(t, c, "GET", reviews+"/")
		counts[code]++
	}
	if counts[200]+counts[500] != 200 || counts[500] < 5 || counts[500] > 40 {
		t.Errorf("answers %v, want ~10%% 500 (the missing backend's share), rest 200", counts)
	}
	v2 := e.httpClient(sleepID, "10.96.0.22:9080")
	if code, body, _ := get(t, v2, "GET", reviews+"/"); code != 200 || body != "v2" {
		t.Errorf("other service: %d %q", code, body)
	}
}

func TestOverload(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	block := httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			once.Do(func() { close(entered) })
			<-release
		}
		io.WriteString(w, "ok")
	}))
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": block},
		withConfig(func(c *listener.Config) { c.MaxRequests = 1; c.MaxConnections = 2 }))
	c := e.httpClient(sleepID, "10.96.0.21:9080")
	done := make(chan int)
	go func() {
		code, _, _ := get(t, c, "GET", "http://reviews-v1:9080/block")
		done <- code
	}()
	<-entered
	code, body, h := get(t, c, "GET", "http://reviews-v1:9080/")
	if code != 503 || body != listener.BodyOverloaded || h.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("over the request limit: %d %q %v", code, body, h)
	}
	// Two tunnels are open now (the blocked request's and the 503's).
	if _, err := e.dial(t.Context(), sleepID, "10.96.0.21:9080"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("third tunnel: %v, want 503", err)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Errorf("blocked request: %d", code)
	}
	if code, _, _ := get(t, c, "GET", "http://reviews-v1:9080/"); code != 200 {
		t.Errorf("after the load: %d", code)
	}
}

func routeCluster(name string) *routev3.RouteAction_Cluster {
	return &routev3.RouteAction_Cluster{Cluster: name}
}

func retryOn(cond string, n uint32) *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: cond, NumRetries: wrapperspb.UInt32(n)}
}
