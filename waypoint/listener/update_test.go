package listener_test

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/waypoint/listener"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

// A route update applies to the next request on an open connection; a
// refused update changes nothing.
func TestConfigUpdate(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.0.20:9080")
	if code, _, _ := get(t, c, "GET", reviews+"/"); code != 200 {
		t.Fatal(code)
	}
	rc := statetest.MustLoad(t, "weights").Routes[0]
	for _, vh := range rc.VirtualHosts {
		if vh.Name == "reviews.default.svc.cluster.local:9080" {
			vh.Routes[0].Action = &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: routeCluster("outbound|9080||reviews-v2.default.svc.cluster.local")}}
		}
	}
	if err := e.store.SetRoutes([]*routev3.RouteConfiguration{rc}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if code, body, _ := get(t, c, "GET", reviews+"/"); code != 200 || body != "v2" {
			t.Fatalf("after the update: %d %q, want v2", code, body)
		}
	}
	bad := proto.Clone(rc).(*routev3.RouteConfiguration)
	bad.VirtualHosts[0].RequireTls = routev3.VirtualHost_ALL
	if err := e.store.SetRoutes([]*routev3.RouteConfiguration{bad}); err == nil {
		t.Fatal("unsupported field accepted")
	}
	if code, body, _ := get(t, c, "GET", reviews+"/"); code != 200 || body != "v2" {
		t.Errorf("after a refused update: %d %q", code, body)
	}
}

func TestAccessLog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	e := newEnv(t, "authz", map[string]backend{"10.244.1.41": whoami("productpage"), "10.244.1.42": whoami("ratings")},
		withConfig(func(c *listener.Config) { c.Logger = zap.New(core) }))
	c := e.httpClient(sleepID, "10.96.0.41:9080")
	get(t, c, "GET", "http://ratings:9080/public?q=1")
	get(t, c, "POST", "http://ratings:9080/admin")
	entries := logs.FilterMessage("access").AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d access log lines, want 2", len(entries))
	}
	want := []map[string]any{
		{"method": "GET", "path": "/public", "code": int64(200), "flags": "-", "route": "default",
			"cluster": "outbound|9080||ratings.default.svc.cluster.local", "source_principal": "spiffe://cluster.local/ns/default/sa/sleep"},
		{"method": "POST", "path": "/admin", "code": int64(403), "flags": "RBAC", "cluster": "-"},
	}
	for i, w := range want {
		got := entries[i].ContextMap()
		for k, v := range w {
			if got[k] != v {
				t.Errorf("line %d: %s = %v (%T), want %v", i, k, got[k], got[k], v)
			}
		}
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": whoami("v1"), "10.244.2.12": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.0.21:9080")
	if code, _, _ := get(t, c, "GET", "http://reviews-v1:9080/"); code != 200 {
		t.Fatal(code)
	}
	if err := e.wp.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown with an idle keep-alive tunnel: %v", err)
	}
	if tunnels, reqs := e.wp.Stats(); reqs != 0 {
		t.Errorf("after Shutdown: %d tunnels, %d requests", tunnels, reqs)
	}
	if _, err := c.Get("http://reviews-v1:9080/"); err == nil {
		t.Error("request served after Shutdown")
	}
}
