package router

import (
	"fmt"
	"net/http"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// benchConfig has 50 virtual hosts × 20 routes mixing path kinds and
// header matches, like a busy namespace waypoint.
func benchConfig() *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "9080"}
	for v := range 50 {
		host := fmt.Sprintf("svc%d.default.svc.cluster.local", v)
		vh := &routev3.VirtualHost{Name: host + ":9080", Domains: []string{host, host + ":9080", fmt.Sprintf("svc%d", v), fmt.Sprintf("10.96.0.%d:9080", v)}}
		for r := range 20 {
			m := &routev3.RouteMatch{}
			switch r % 4 {
			case 0:
				m.PathSpecifier = &routev3.RouteMatch_Path{Path: fmt.Sprintf("/exact/%d", r)}
			case 1:
				m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: fmt.Sprintf("/api/v%d", r)}
			case 2:
				m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: fmt.Sprintf("/items/%d/[0-9]+", r)}}
			case 3:
				m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
				m.Headers = []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: fmt.Sprintf("user%d", r)}}}}}
			}
			vh.Routes = append(vh.Routes, &routev3.Route{Name: fmt.Sprint(r), Match: m,
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: fmt.Sprintf("c%d-%d", v, r)}}}})
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

func BenchmarkMatch(b *testing.B) {
	tbl, err := Compile(benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	r := RequestInfo{Host: "svc42.default.svc.cluster.local:9080", Method: "GET", Path: "/reviews/1",
		Headers: http.Header{"End-User": {"user19"}, "Accept": {"*/*"}}}
	if rt, ok := tbl.Match(r); !ok || rt.Cluster != "c42-19" {
		b.Fatalf("benchmark request routed to %v", rt)
	}
	b.ReportAllocs()
	for b.Loop() {
		tbl.Match(r)
	}
}
