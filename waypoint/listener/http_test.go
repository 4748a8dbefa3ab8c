package listener_test

import (
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/ambient-mesh/ambient/waypoint/listener"
)

const reviews = "http://reviews.default.svc.cluster.local:9080"

func TestWeightedSplit(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	counts := map[string]int{}
	const n = 1000
	for range n {
		code, body, _ := get(t, c, "GET", reviews+"/reviews/1")
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		counts[body]++
	}
	if counts["v1"]+counts["v2"] != n {
		t.Fatalf("answers = %v", counts)
	}
	share := float64(counts["v2"]) / n * 100
	if math.Abs(share-10) > 3 {
		t.Errorf("v2 got %.1f%% of %d requests, want 10 ± 3", share, n)
	}
	t.Logf("split: %v", counts)
}

// The destination service comes from the CONNECT authority (the VIP), not
// the Host header; a pod IP authority routes by Host.
func TestServiceByVIP(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	v2 := e.httpClient(sleepID, "10.96.0.22:9080") // reviews-v2's VIP
	for range 5 {
		if code, body, _ := get(t, v2, "GET", reviews+"/"); code != 200 || body != "v2" {
			t.Fatalf("via reviews-v2 VIP with Host reviews: %d %q, want v2", code, body)
		}
	}
	pod := e.httpClient(sleepID, "10.244.1.11:9080") // workload address: Host decides
	if code, body, _ := get(t, pod, "GET", "http://reviews-v2:9080/"); code != 200 || body != "v2" {
		t.Errorf("pod authority, Host reviews-v2: %d %q, want v2", code, body)
	}
	if code, _, _ := get(t, pod, "GET", "http://unknown.example:9080/"); code != http.StatusNotFound {
		t.Errorf("pod authority, unknown Host: %d, want 404", code)
	}
}

func TestHeaderMatch(t *testing.T) {
	e := newEnv(t, "header-match", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	for _, tc := range []struct {
		name string
		url  string
		hdr  []string
		want string
	}{
		{"default", "/", nil, "v1"},
		{"end-user jason", "/", []string{"end-user", "jason"}, "v2"},
		{"end-user other", "/", []string{"end-user", "bob"}, "v1"},
		{"canary query", "/?version=v2", []string{"x-canary", "yes"}, "v2"},
		{"canary without query", "/", []string{"x-canary", "yes"}, "v1"},
	} {
		code, body, _ := get(t, c, "GET", reviews+tc.url, tc.hdr...)
		if code != 200 || body != tc.want {
			t.Errorf("%s: %d %q, want 200 %q", tc.name, code, body, tc.want)
		}
	}
}

func TestAuthz(t *testing.T) {
	e := newEnv(t, "authz", map[string]backend{"10.244.1.41": whoami("productpage"), "10.244.1.42": whoami("ratings")})
	sleep := e.httpClient(sleepID, "10.96.0.41:9080")
	admin := e.httpClient(adminID, "10.96.0.41:9080")
	const ratings = "http://ratings.default.svc.cluster.local:9080"
	for _, tc := range []struct {
		name   string
		c      *http.Client
		method string
		path   string
		want   int
	}{
		{"sleep GET /public", sleep, "GET", "/public", 200},
		{"sleep POST /admin", sleep, "POST", "/admin", 403},
		{"admin POST /admin", admin, "POST", "/admin", 200},
		{"admin GET /other", admin, "GET", "/other", 403},
	} {
		code, body, _ := get(t, tc.c, tc.method, ratings+tc.path)
		if code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
		if code == 403 && body != "RBAC: access denied" {
			t.Errorf("%s: body %q", tc.name, body)
		}
	}
}

// The deny policy of productpage applies to sleep on /public/secret.
func TestAuthzDenyPolicy(t *testing.T) {
	e := newEnv(t, "authz", map[string]backend{"10.244.1.41": whoami("productpage"), "10.244.1.42": whoami("ratings")})
	c := e.httpClient(sleepID, "10.96.0.40:9080")
	const pp = "http://productpage.default.svc.cluster.local:9080"
	if code, _, _ := get(t, c, "GET", pp+"/public/secret"); code != 403 {
		t.Errorf("sleep GET /public/secret = %d, want 403", code)
	}
	if code, _, _ := get(t, c, "GET", pp+"/public/secret", "x-user", "admin-1"); code != 200 {
		t.Errorf("sleep GET /public/secret as admin user = %d, want 200", code)
	}
	if code, _, _ := get(t, c, "GET", pp+"/public/index"); code != 200 {
		t.Errorf("sleep GET /public/index = %d, want 200", code)
	}
	// details has an unsupported CUSTOM policy: deny-all (fail closed).
	d := e.httpClient(adminID, "10.96.0.42:9080")
	if code, _, _ := get(t, d, "GET", "http://details:9080/public"); code != 403 {
		t.Errorf("details GET /public = %d, want 403", code)
	}
}

func TestRequestHeaders(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")},
		withConfig(func(c *listener.Config) { c.UpstreamServiceTime = true }))
	c := e.httpClient(sleepID, "10.96.0.21:9080")
	const in = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	_, _, h := get(t, c, "GET", "http://reviews-v1:9080/x", "traceparent", in, "x-forwarded-for", "1.2.3.4")
	if got := h.Get("X-Seen-Xff"); got != "1.2.3.4, 10.244.0.99" {
		t.Errorf("x-forwarded-for upstream = %q", got)
	}
	tp := h.Get("X-Seen-Traceparent")
	if !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || tp == in || len(tp) != len(in) || !strings.HasSuffix(tp, "-01") {
		t.Errorf("traceparent upstream = %q, want the same trace with a new span", tp)
	}
	if h.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Error("no x-envoy-upstream-service-time")
	}
	if id := h.Get("X-Seen-Request-Id"); len(id) != 36 {
		t.Errorf("x-request-id upstream = %q", id)
	}
	_, _, h = get(t, c, "GET", "http://reviews-v1:9080/x", "x-request-id", "abc")
	if id := h.Get("X-Seen-Request-Id"); id != "abc" {
		t.Errorf("x-request-id not kept: %q", id)
	}
	if tp := h.Get("X-Seen-Traceparent"); tp != "" {
		t.Errorf("traceparent invented: %q", tp)
	}
}
