package router

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
)

// The golden outputs of istiod-lite/waypointxds, read from disk so that the
// waypoint does not import istiod-lite (components stay independent) while
// this test checks both ends agree on what the configuration means.
const goldenDir = "../../istiod-lite/waypointxds/testdata"

type golden struct {
	listeners []*listenerv3.Listener
	routes    map[string]*Table
	clusters  map[string]*clusterv3.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment
	// rbac filters of the chain serving each RDS route name
	rbac map[string][]authz.Filter
}

func loadGolden(t *testing.T, name string) *golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, name+"-out.yaml"))
	if err != nil {
		t.Fatalf("read golden output: %v", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Listeners, Routes, Clusters, Endpoints []json.RawMessage
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	g := &golden{routes: map[string]*Table{}, clusters: map[string]*clusterv3.Cluster{},
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{}, rbac: map[string][]authz.Filter{}}
	for _, raw := range doc.Routes {
		rc := &routev3.RouteConfiguration{}
		if err := protojson.Unmarshal(raw, rc); err != nil {
			t.Fatalf("route: %v", err)
		}
		tbl, err := Compile(rc)
		if err != nil {
			t.Fatalf("waypoint would NACK route %s: %v", rc.Name, err)
		}
		g.routes[rc.Name] = tbl
	}
	for _, raw := range doc.Clusters {
		c := &clusterv3.Cluster{}
		if err := protojson.Unmarshal(raw, c); err != nil {
			t.Fatalf("cluster: %v", err)
		}
		g.clusters[c.Name] = c
	}
	for _, raw := range doc.Endpoints {
		e := &endpointv3.ClusterLoadAssignment{}
		if err := protojson.Unmarshal(raw, e); err != nil {
			t.Fatalf("endpoints: %v", err)
		}
		g.endpoints[e.ClusterName] = e
	}
	for _, raw := range doc.Listeners {
		l := &listenerv3.Listener{}
		if err := protojson.Unmarshal(raw, l); err != nil {
			t.Fatalf("listener: %v", err)
		}
		g.listeners = append(g.listeners, l)
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatalf("listener %s chain %s: %v", l.Name, fc.Name, err)
				}
				rds := hcm.GetRds().GetRouteConfigName()
				if g.routes[rds] == nil {
					t.Errorf("listener %s chain %s: RDS %q not in the output", l.Name, fc.Name, rds)
				}
				filters, err := authz.FromHTTPFilters(hcm.HttpFilters)
				if err != nil {
					t.Fatalf("waypoint would NACK listener %s: %v", l.Name, err)
				}
				g.rbac[rds] = filters
			}
		}
	}
	return g
}

// route matches a request on the route configuration of a port.
func (g *golden) route(t *testing.T, port string, r RequestInfo) *Route {
	t.Helper()
	tbl := g.routes[port]
	if tbl == nil {
		t.Fatalf("no route configuration %q", port)
	}
	rt, ok := tbl.Match(r)
	if !ok {
		t.Fatalf("%s %s%s: no route", r.Method, r.Host, r.Path)
	}
	return rt
}

func outbound(host string) string { return "outbound|9080||" + host + ".default.svc.cluster.local" }

// TestGoldenConsistency checks every golden output: routes compile, every
// cluster a route can pick is sent (except deliberate invalid backends) and
// has a load assignment whose endpoints carry the HBONE metadata.
func TestGoldenConsistency(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*-out.yaml"))
	if len(files) < 10 {
		t.Fatalf("found %d golden outputs in %s, want the waypointxds cases", len(files), goldenDir)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), "-out.yaml")
		t.Run(name, func(t *testing.T) {
			g := loadGolden(t, name)
			for _, tbl := range g.routes {
				for _, vh := range tbl.allVirtualHosts() {
					for _, r := range vh.Routes {
						names := []string{r.Cluster}
						for _, w := range r.WeightedClusters {
							names = append(names, w.Name)
						}
						for _, c := range names {
							if c == "" || strings.HasPrefix(c, "invalid-backend|") && r.ClusterNotFoundStatus == 500 {
								continue
							}
							if g.clusters[c] == nil || g.endpoints[c] == nil {
								t.Errorf("route %s/%s picks cluster %q, which has no Cluster or ClusterLoadAssignment", vh.Name, r.Name, c)
							}
						}
					}
				}
			}
			for name, cla := range g.endpoints {
				for _, l := range cla.Endpoints {
					for _, e := range l.LbEndpoints {
						md := e.GetMetadata().GetFilterMetadata()["tunnel"].GetFields()
						addr := e.GetEndpoint().GetAddress().GetSocketAddress()
						if !strings.HasSuffix(md["address"].GetStringValue(), ":15008") || !strings.HasPrefix(md["address"].GetStringValue(), addr.GetAddress()+":") {
							t.Errorf("%s: endpoint %s lacks HBONE tunnel metadata: %v", name, addr.GetAddress(), md)
						}
					}
				}
			}
		})
	}
}

func (t *Table) allVirtualHosts() []*VirtualHost {
	seen := map[*VirtualHost]bool{}
	var out []*VirtualHost
	add := func(vh *VirtualHost) {
		if vh != nil && !seen[vh] {
			seen[vh] = true
			out = append(out, vh)
		}
	}
	for _, vh := range t.exact {
		add(vh)
	}
	for _, w := range append(append([]wildcard(nil), t.suffixes...), t.prefixes...) {
		add(w.vh)
	}
	add(t.star)
	return out
}

func TestAgreeWeights(t *testing.T) {
	g := loadGolden(t, "weights")
	r := g.route(t, "9080", req("reviews:9080", "GET", "/productpage"))
	rnd := rand.New(rand.NewPCG(7, 9))
	n1 := 0
	for range 10000 {
		if r.PickCluster(rnd) == outbound("reviews-v1") {
			n1++
		}
	}
	if n1 < 8800 || n1 > 9200 {
		t.Errorf("reviews-v1 got %d of 10000, want 90%%±2", n1)
	}
	for _, host := range []string{"reviews-v1", "reviews-v1.default", "10.96.0.21:9080", "reviews-v1.default.svc.cluster.local:9080"} {
		if c := g.route(t, "9080", req(host, "GET", "/")).Cluster; c != outbound("reviews-v1") {
			t.Errorf("%s routed to %q, want reviews-v1's own cluster", host, c)
		}
	}
	if c := g.route(t, "9080", req("reviews", "GET", "/")).Timeout; c != 0 {
		t.Errorf("timeout %v, want none (Gateway API default)", c)
	}
}

func TestAgreeHeaderMatch(t *testing.T) {
	g := loadGolden(t, "header-match")
	tests := []struct {
		req  RequestInfo
		want string
	}{
		{req("reviews", "GET", "/reviews/0", "end-user", "jason"), "reviews-v2"},
		{req("reviews", "GET", "/reviews/0", "end-user", "bob"), "reviews-v1"},
		{req("reviews", "GET", "/reviews/0"), "reviews-v1"},
		{req("reviews", "GET", "/x?version=v2", "x-canary", "yes"), "reviews-v2"},
		{req("reviews", "POST", "/x?version=v2", "x-canary", "yes"), "reviews-v1"},
		{req("reviews", "GET", "/x?version=v1", "x-canary", "true"), "reviews-v1"},
	}
	for _, tt := range tests {
		if c := g.route(t, "9080", tt.req).Cluster; c != outbound(tt.want) {
			t.Errorf("%s %s%s %v: cluster %q, want %s", tt.req.Method, tt.req.Host, tt.req.Path, tt.req.Headers, c, tt.want)
		}
	}
}

func TestAgreeRewrite(t *testing.T) {
	g := loadGolden(t, "rewrite")
	tests := []struct{ path, cluster, rewritten, host string }{
		{"/api/v1/ratings", "reviews-v1", "/v1/ratings", ""},
		{"/api/v1", "reviews-v1", "/v1", ""},
		{"/api/v10", "reviews", "/api/v10", ""},
		{"/strip/a/b", "reviews-v2", "/a/b", "reviews-v2.default.svc.cluster.local"},
		{"/strip", "reviews-v2", "/", "reviews-v2.default.svc.cluster.local"},
		{"/legacy", "reviews-v2", "/modern", ""},
		{"/reviews/42", "reviews", "/reviews/42", ""}, // regex sorts after the catch-all prefix (Istio)
		{"/reviews/abc", "reviews", "/reviews/abc", ""},
	}
	for _, tt := range tests {
		r := g.route(t, "9080", req("reviews", "GET", tt.path))
		if r.Cluster != outbound(tt.cluster) || r.RewritePath(tt.path) != tt.rewritten || r.HostRewrite != tt.host {
			t.Errorf("%s: cluster %q path %q host %q, want %s %q %q", tt.path, r.Cluster, r.RewritePath(tt.path), r.HostRewrite, tt.cluster, tt.rewritten, tt.host)
		}
	}
}

func TestAgreeTimeoutRetry(t *testing.T) {
	g := loadGolden(t, "timeout-retry")
	r := g.route(t, "9080", req("reviews", "GET", "/"))
	p := r.Retry
	if r.Timeout != 2*time.Second || r.PerTryTimeout != 500*time.Millisecond || p == nil {
		t.Fatalf("timeout %v per-try %v retry %v, want 2s 500ms and a policy", r.Timeout, r.PerTryTimeout, p)
	}
	if p.Retries != 3 || !p.RetriableStatus(502) || !p.RetriableStatus(503) || p.RetriableStatus(500) || p.Backoff(1) != 100*time.Millisecond {
		t.Errorf("retry %+v, want 3 retries on 502/503 with 100ms backoff", p)
	}
}

func TestAgreeRedirect(t *testing.T) {
	g := loadGolden(t, "redirect")
	tests := []struct {
		path, query, loc string
		status           int
	}{
		{"/old/page", "", "https://reviews.example.com/old/page", 301},
		{"/moved", "a=1", "http://reviews:8443/new-home?a=1", 302},
		{"/v0/items", "", "http://reviews:9080/v1/items", 302},
		{"/docs/guide/a", "", "http://reviews:9080/guide/a", 308},
		{"/docs", "", "http://reviews:9080/", 308},
	}
	for _, tt := range tests {
		rq := req("reviews:9080", "GET", tt.path)
		r := g.route(t, "9080", rq)
		if r.Redirect == nil {
			t.Fatalf("%s: not a redirect", tt.path)
		}
		if loc := r.RedirectLocation(rq, "http", tt.query); loc != tt.loc || r.Redirect.Status != tt.status {
			t.Errorf("%s: %d %s, want %d %s", tt.path, r.Redirect.Status, loc, tt.status, tt.loc)
		}
	}
	if r := g.route(t, "9080", req("reviews", "GET", "/older")); r.Redirect != nil || r.Cluster != outbound("reviews-v1") {
		t.Errorf("/older: redirect %v cluster %q; a path prefix must match whole segments", r.Redirect, r.Cluster)
	}
}

func TestAgreeHeaderModifiers(t *testing.T) {
	g := loadGolden(t, "header-modifiers")
	r := g.route(t, "9080", req("reviews", "GET", "/"))
	h := http.Header{"X-Env": {"dev"}, "X-Trace": {"client"}, "X-Debug": {"1"}}
	r.RequestHeaders.Apply(h)
	if !equalHeaders(h, http.Header{"X-Env": {"prod"}, "X-Trace": {"client", "waypoint"}}) {
		t.Errorf("request headers %v", h)
	}
	resp := http.Header{"Server": {"x"}, "Cache-Control": {"max-age=1"}}
	r.ResponseHeaders.Apply(resp)
	if !equalHeaders(resp, http.Header{"Cache-Control": {"no-store"}}) {
		t.Errorf("response headers %v", resp)
	}
}

func TestAgreeFault(t *testing.T) {
	g := loadGolden(t, "fault")
	f := g.route(t, "9080", req("reviews", "GET", "/")).Fault
	if f == nil || f.Delay != 2*time.Second || f.DelayPerMillion != 500000 || f.AbortStatus != 503 || f.AbortPerMillion != 100000 {
		t.Errorf("fault %+v, want 2s delay on 50%% and 503 on 10%%", f)
	}
	r := g.route(t, "9080", req("reviews-v2", "GET", "/"))
	if r.Fault != nil || r.Cluster != outbound("reviews-v2") {
		t.Errorf("reviews-v2 (route with a bad annotation is rejected): fault %+v cluster %q, want the default route", r.Fault, r.Cluster)
	}
}

func TestAgreeMissingBackend(t *testing.T) {
	g := loadGolden(t, "missing-backend")
	if r := g.route(t, "9080", req("reviews", "GET", "/only-missing/x")); r.DirectResponse == nil || r.DirectResponse.Status != 500 {
		t.Errorf("/only-missing: %+v, want a direct 500", r)
	}
	r := g.route(t, "9080", req("reviews", "GET", "/"))
	rnd := rand.New(rand.NewPCG(1, 1))
	failed := 0
	for range 10000 {
		if c := r.PickCluster(rnd); g.clusters[c] == nil {
			failed++
		}
	}
	if r.ClusterNotFoundStatus != 500 || failed < 800 || failed > 1200 {
		t.Errorf("missing share: status %d, %d of 10000 to unknown clusters; want 500 for ~10%%", r.ClusterNotFoundStatus, failed)
	}
}

func TestAgreeGRPC(t *testing.T) {
	g := loadGolden(t, "grpc")
	v1, v2 := "outbound|50051||greeter.grpc.svc.cluster.local", "outbound|50051||greeter-v2.grpc.svc.cluster.local"
	tests := []struct {
		req  RequestInfo
		want string
	}{
		{req("greeter.grpc:50051", "POST", "/helloworld.Greeter/SayHello", "x-version", "v2"), v2},
		{req("greeter.grpc:50051", "POST", "/helloworld.Greeter/SayHello"), v1},
		{req("greeter.grpc:50051", "POST", "/other.Service/SayGoodbye"), v2},
		{req("10.96.1.10:50051", "POST", "/helloworld.Greeter/Other"), v1},
	}
	for _, tt := range tests {
		if c := g.route(t, "50051", tt.req).Cluster; c != tt.want {
			t.Errorf("%s %v: cluster %q, want %q", tt.req.Path, tt.req.Headers, c, tt.want)
		}
	}
	if _, ok := g.routes["50051"].Match(req("greeter.grpc", "POST", "/other.Service/Other")); ok {
		t.Error("/other.Service/Other matched; a GRPCRoute without a catch-all rule must not")
	}
	if g.clusters[v2].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
		t.Error("gRPC cluster does not ask for HTTP/2 upstream")
	}
}

func TestAgreeAuthz(t *testing.T) {
	g := loadGolden(t, "authz")
	a, s, o := id("default", "admin"), id("default", "sleep"), id("default", "reviews")
	admin, sleep, other := &a, &s, &o
	tests := []struct {
		name   string
		host   string
		method string
		path   string
		peer   authzPeer
		hdr    []string
		allow  bool
	}{
		{"waypoint: GET /public open", "ratings", "GET", "/public/index.html", nil, nil, true},
		{"waypoint: POST /admin by admin", "ratings", "POST", "/admin", admin, nil, true},
		{"waypoint: POST /admin by other", "ratings", "POST", "/admin", other, nil, false},
		{"waypoint: GET /private", "ratings", "GET", "/private", admin, nil, false},
		{"productpage: deny sleep on /public/secret", "productpage:9080", "GET", "/public/secret/1", sleep, nil, false},
		{"productpage: admin header lifts the deny", "productpage", "GET", "/public/secret/1", sleep, []string{"x-user", "admin-bob"}, true},
		{"productpage: other principal not denied", "productpage", "GET", "/public/secret/1", other, nil, true},
		{"productpage: waypoint allow still applies", "productpage", "POST", "/admin", sleep, nil, false},
		{"productpage: admin", "10.96.0.40:9080", "POST", "/admin", admin, nil, true},
		{"details: CUSTOM denies all", "details", "GET", "/public/x", admin, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rq := req(tt.host, tt.method, tt.path, tt.hdr...)
			r := g.route(t, "9080", rq)
			ar := &authz.Request{Method: tt.method, Host: tt.host, Path: tt.path, Headers: rq.Headers, DestinationPort: 9080}
			if tt.peer != nil {
				ar.Peer = *tt.peer
			}
			d := authz.Chain(g.rbac["9080"], r.Authz, ar)
			if d.Allowed != tt.allow {
				t.Errorf("decision %+v, want allowed=%v", d, tt.allow)
			}
		})
	}
}

type authzPeer = *spiffe.Identity

func id(ns, sa string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
}

func TestAgreeGatewayParent(t *testing.T) {
	g := loadGolden(t, "gateway-parent")
	tests := []struct {
		host, path, want string
		servedBy         bool
	}{
		{"reviews", "/api/v2/x", "reviews-v2", false},   // longer prefix first
		{"reviews", "/api/x", "reviews-v1", false},      // older route wins the tie
		{"reviews", "/healthz", "reviews-v1", true},     // Gateway-attached route
		{"reviews-v1", "/healthz", "reviews-v1", true},  // selected by hostnames
		{"reviews-v1", "/other", "reviews-v1", false},   // default route after Gateway routes
		{"reviews-v2", "/healthz", "reviews-v2", false}, // not selected by hostnames
	}
	for _, tt := range tests {
		r := g.route(t, "9080", req(tt.host, "GET", tt.path))
		h := http.Header{}
		r.ResponseHeaders.Apply(h)
		if r.Cluster != outbound(tt.want) || (h.Get("X-Served-By") == "waypoint") != tt.servedBy {
			t.Errorf("%s%s: cluster %q headers %v, want %s (x-served-by: %v)", tt.host, tt.path, r.Cluster, h, tt.want, tt.servedBy)
		}
	}
	if _, ok := g.routes["9080"].Match(req("reviews", "GET", "/unmatched")); ok {
		t.Error("reviews/unmatched routed; a Service with attached routes answers 404 for other paths (GAMMA)")
	}
}
