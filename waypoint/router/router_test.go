package router

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

const matchConfig = `
name: "9080"
virtual_hosts:
- name: reviews
  domains: [reviews.default.svc.cluster.local, "reviews.default.svc.cluster.local:9080", reviews, "reviews:9080", "10.96.0.20", "10.96.0.20:9080", "[fd00::20]", "[fd00::20]:9080"]
  routes:
  - name: exact
    match: {path: /exact}
    route: {cluster: exact}
  - name: sep
    match: {path_separated_prefix: /api}
    route: {cluster: sep}
  - name: regex
    match: {safe_regex: {regex: "/items/[0-9]+"}}
    route: {cluster: regex}
  - name: nocase
    match: {prefix: /CaSe, case_sensitive: false}
    route: {cluster: nocase}
  - name: header-exact
    match:
      prefix: /h
      headers: [{name: end-user, string_match: {exact: jason}}]
    route: {cluster: header-exact}
  - name: header-regex
    match:
      prefix: /h
      headers: [{name: x-canary, string_match: {safe_regex: {regex: "(yes|true)"}}}]
    route: {cluster: header-regex}
  - name: header-absent
    match:
      prefix: /h
      headers: [{name: x-absent, present_match: false}]
    route: {cluster: header-absent}
  - name: header-fallback
    match: {prefix: /h}
    route: {cluster: header-fallback}
  - name: invert
    match:
      prefix: /inv
      headers: [{name: x-env, string_match: {exact: prod}, invert_match: true}]
    route: {cluster: invert}
  - name: query
    match:
      prefix: /q
      query_parameters: [{name: version, string_match: {exact: v2}}]
    route: {cluster: query}
  - name: query-present
    match:
      prefix: /q
      query_parameters: [{name: debug, present_match: true}]
    route: {cluster: query-present}
  - name: method
    match:
      prefix: /m
      headers: [{name: ":method", string_match: {exact: POST}}]
    route: {cluster: method}
  - name: multi
    match:
      prefix: /multi
      headers: [{name: x-list, string_match: {exact: "a,b"}}]
    route: {cluster: multi}
  - name: first
    match: {prefix: /order}
    route: {cluster: first}
  - name: second
    match: {prefix: /order/more}
    route: {cluster: second}
  - name: catch-all
    match: {prefix: /}
    route: {cluster: catch-all}
- name: suffix-short
  domains: ["*.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: suffix-short}}]
- name: suffix-long
  domains: ["*.api.example.com"]
  routes: [{match: {prefix: /}, route: {cluster: suffix-long}}]
- name: prefix-wild
  domains: ["internal.*"]
  routes: [{match: {prefix: /}, route: {cluster: prefix-wild}}]
- name: star
  domains: ["*"]
  routes: [{match: {prefix: /only}, route: {cluster: star}}]
`

func TestMatch(t *testing.T) {
	tbl := compileYAML(t, matchConfig)
	tests := []struct {
		name string
		req  RequestInfo
		want string // cluster; "" = no match
	}{
		{"fqdn", req("reviews.default.svc.cluster.local", "GET", "/x"), "catch-all"},
		{"fqdn with port", req("reviews.default.svc.cluster.local:9080", "GET", "/x"), "catch-all"},
		{"short with port", req("reviews:9080", "GET", "/x"), "catch-all"},
		{"host upper case", req("REVIEWS:9080", "GET", "/x"), "catch-all"},
		{"unknown port falls back to host", req("reviews:1234", "GET", "/x"), "catch-all"},
		{"vip", req("10.96.0.20:9080", "GET", "/x"), "catch-all"},
		{"ipv6 vip with port", req("[fd00::20]:9080", "GET", "/x"), "catch-all"},
		{"ipv6 vip other port", req("[fd00::20]:1", "GET", "/x"), "catch-all"},
		{"suffix wildcard longest wins", req("v1.api.example.com", "GET", "/"), "suffix-long"},
		{"suffix wildcard", req("www.example.com", "GET", "/"), "suffix-short"},
		{"suffix wildcard needs a label", req("example.com", "GET", "/only"), "star"},
		{"prefix wildcard", req("internal.corp", "GET", "/"), "prefix-wild"},
		{"star", req("unknown.host", "GET", "/only"), "star"},
		{"wildcard without port", req("www.example.com:8080", "GET", "/"), "suffix-short"},
		{"exact without port beats wildcard", req("reviews.default.svc.cluster.local:1", "GET", "/x"), "catch-all"},
		{"star route miss", req("unknown.host", "GET", "/other"), ""},
		{"exact path", req("reviews", "GET", "/exact"), "exact"},
		{"exact path is exact", req("reviews", "GET", "/exact/"), "catch-all"},
		{"separated prefix itself", req("reviews", "GET", "/api"), "sep"},
		{"separated prefix child", req("reviews", "GET", "/api/v1"), "sep"},
		{"separated prefix not partial segment", req("reviews", "GET", "/apix"), "catch-all"},
		{"regex matches whole path", req("reviews", "GET", "/items/42"), "regex"},
		{"regex not partial", req("reviews", "GET", "/items/42/x"), "catch-all"},
		{"case insensitive prefix", req("reviews", "GET", "/case/x"), "nocase"},
		{"header exact", req("reviews", "GET", "/h", "End-User", "jason"), "header-exact"},
		{"header exact other value", req("reviews", "GET", "/h", "End-User", "bob", "X-Absent", "1"), "header-fallback"},
		{"header regex", req("reviews", "GET", "/h", "X-Canary", "true"), "header-regex"},
		{"header regex full match", req("reviews", "GET", "/h", "X-Canary", "yesno", "X-Absent", "1"), "header-fallback"},
		{"header absent", req("reviews", "GET", "/h"), "header-absent"},
		{"invert matches other value", req("reviews", "GET", "/inv", "X-Env", "dev"), "invert"},
		{"invert skips value", req("reviews", "GET", "/inv", "X-Env", "prod"), "catch-all"},
		{"invert on absent header does not match", req("reviews", "GET", "/inv"), "catch-all"},
		{"query exact", req("reviews", "GET", "/q?version=v2"), "query"},
		{"query other value", req("reviews", "GET", "/q?version=v1"), "catch-all"},
		{"query present", req("reviews", "GET", "/q?debug"), "query-present"},
		{"method", req("reviews", "POST", "/m"), "method"},
		{"method other", req("reviews", "GET", "/m"), "catch-all"},
		{"multiple values joined", req("reviews", "GET", "/multi", "X-List", "a", "X-List", "b"), "multi"},
		{"first match wins over longer prefix", req("reviews", "GET", "/order/more"), "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tbl.Match(tt.req)
			got := ""
			if ok {
				got = r.Cluster
			}
			if got != tt.want {
				t.Errorf("Match(%s %s%s) = %q, want %q", tt.req.Method, tt.req.Host, tt.req.Path, got, tt.want)
			}
		})
	}
}

func TestPickClusterWeights(t *testing.T) {
	tbl := compileYAML(t, `
name: w
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters: [{name: v1, weight: 90}, {name: v2, weight: 10}]`)
	r, ok := tbl.Match(req("reviews", "GET", "/"))
	if !ok {
		t.Fatal("no route")
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 10000
	for range n {
		counts[r.PickCluster(rnd)]++
	}
	if v1 := float64(counts["v1"]) * 100 / n; v1 < 88 || v1 > 92 {
		t.Errorf("v1 share %.1f%%, want 90±2 (counts %v)", v1, counts)
	}
	if counts["v1"]+counts["v2"] != n {
		t.Errorf("unexpected clusters picked: %v", counts)
	}
}

func TestRewritePath(t *testing.T) {
	tbl := compileYAML(t, `
name: rw
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - name: prefix
    match: {path_separated_prefix: /api/v1}
    route: {cluster: c, prefix_rewrite: /v1}
  - name: root
    match: {path_separated_prefix: /strip}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "^/strip/*"}, substitution: /}, host_rewrite_literal: backend.internal}
  - name: full
    match: {path: /legacy}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "^/.*$"}, substitution: /modern}}
  - name: groups
    match: {prefix: /g/}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "^/g/([a-z]+)/([0-9]+)$"}, substitution: "/\\2/\\1"}}
  - name: none
    match: {prefix: /}
    route: {cluster: c}`)
	tests := []struct{ path, want, host string }{
		{"/api/v1/items", "/v1/items", ""},
		{"/api/v1", "/v1", ""},
		{"/strip/x/y", "/x/y", "backend.internal"},
		{"/strip", "/", "backend.internal"},
		{"/legacy", "/modern", ""},
		{"/g/abc/12", "/12/abc", ""},
		{"/other", "/other", ""},
	}
	for _, tt := range tests {
		r, ok := tbl.Match(req("h", "GET", tt.path))
		if !ok {
			t.Fatalf("%s: no route", tt.path)
		}
		if got := r.RewritePath(tt.path); got != tt.want {
			t.Errorf("%s (route %s): rewritten to %q, want %q", tt.path, r.Name, got, tt.want)
		}
		if r.HostRewrite != tt.host {
			t.Errorf("%s: host rewrite %q, want %q", tt.path, r.HostRewrite, tt.host)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	tbl := compileYAML(t, `
name: rd
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {path_separated_prefix: /old}
    redirect: {scheme_redirect: https, host_redirect: reviews.example.com, response_code: MOVED_PERMANENTLY}
  - match: {path: /moved}
    redirect: {path_redirect: /new-home, port_redirect: 8443, response_code: FOUND}
  - match: {path_separated_prefix: /v0}
    redirect: {prefix_rewrite: /v1, strip_query: true}`)
	tests := []struct {
		host, path, query string
		want              string
		status            int
	}{
		{"reviews:9080", "/old/x", "a=1", "https://reviews.example.com/old/x?a=1", 301},
		{"reviews:9080", "/moved", "", "http://reviews:8443/new-home", 302},
		{"reviews:9080", "/v0/items", "a=1", "http://reviews:9080/v1/items", 301}, // Envoy default code
	}
	for _, tt := range tests {
		r, ok := tbl.Match(req(tt.host, "GET", tt.path))
		if !ok || r.Redirect == nil {
			t.Fatalf("%s: no redirect route", tt.path)
		}
		if got := r.RedirectLocation(req(tt.host, "GET", tt.path), "http", tt.query); got != tt.want || r.Redirect.Status != tt.status {
			t.Errorf("%s: Location %q status %d, want %q %d", tt.path, got, r.Redirect.Status, tt.want, tt.status)
		}
	}
}

func TestHeaderMutationApply(t *testing.T) {
	tbl := compileYAML(t, `
name: hm
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add:
    - {header: {key: x-env, value: prod}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-trace, value: waypoint}, append_action: APPEND_IF_EXISTS_OR_ADD}
    - {header: {key: x-once, value: new}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-only-existing, value: new}, append_action: OVERWRITE_IF_EXISTS}
    request_headers_to_remove: [x-debug]
    response_headers_to_add:
    - {header: {key: cache-control, value: no-store}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    response_headers_to_remove: [server]`)
	r, _ := tbl.Match(req("h", "GET", "/"))
	h := http.Header{"X-Env": {"dev"}, "X-Trace": {"client"}, "X-Once": {"old"}, "X-Debug": {"1"}}
	r.RequestHeaders.Apply(h)
	want := http.Header{"X-Env": {"prod"}, "X-Trace": {"client", "waypoint"}, "X-Once": {"old"}}
	if !equalHeaders(h, want) {
		t.Errorf("request headers %v, want %v", h, want)
	}
	resp := http.Header{"Server": {"envoy"}, "Cache-Control": {"max-age=60"}}
	r.ResponseHeaders.Apply(resp)
	if !equalHeaders(resp, http.Header{"Cache-Control": {"no-store"}}) {
		t.Errorf("response headers %v", resp)
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

func TestTimeoutsAndRetry(t *testing.T) {
	tbl := compileYAML(t, `
name: tr
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {path: /retry}
    route:
      cluster: c
      timeout: 2s
      retry_policy:
        retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
        num_retries: 3
        per_try_timeout: 0.5s
        retriable_status_codes: [502, 503]
        retry_back_off: {base_interval: 0.1s}
  - match: {path: /none}
    route: {cluster: c, timeout: 0s}
  - match: {path: /default}
    route: {cluster: c, retry_policy: {retry_on: 5xx}}`)
	r, _ := tbl.Match(req("h", "GET", "/retry"))
	if r.Timeout != 2*time.Second || r.PerTryTimeout != 500*time.Millisecond {
		t.Errorf("timeouts %v / %v, want 2s / 500ms", r.Timeout, r.PerTryTimeout)
	}
	p := r.Retry
	if p == nil || p.Retries != 3 || !p.RetriableStatus(503) || !p.RetriableStatus(502) || p.RetriableStatus(500) || !p.RetriableConnectFailure() {
		t.Errorf("retry policy %+v", p)
	}
	if got := []time.Duration{p.Backoff(1), p.Backoff(2), p.Backoff(3), p.Backoff(10)}; got[0] != 100*time.Millisecond || got[1] != 200*time.Millisecond || got[2] != 400*time.Millisecond || got[3] != time.Second {
		t.Errorf("backoffs %v, want 100ms 200ms 400ms 1s (max = 10 x base)", got)
	}
	r, _ = tbl.Match(req("h", "GET", "/none"))
	if r.Timeout != 0 || r.Retry != nil {
		t.Errorf("/none: timeout %v retry %v, want 0 and nil", r.Timeout, r.Retry)
	}
	r, _ = tbl.Match(req("h", "GET", "/default"))
	if r.Timeout != DefaultTimeout || r.Retry.Retries != 1 || r.Retry.BackoffBase != 25*time.Millisecond || !r.Retry.RetriableStatus(500) {
		t.Errorf("/default: timeout %v retry %+v, want Envoy defaults", r.Timeout, r.Retry)
	}
}

func TestFault(t *testing.T) {
	tbl := compileYAML(t, `
name: f
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        delay: {fixed_delay: 2s, percentage: {numerator: 500000, denominator: MILLION}}
        abort: {http_status: 503, percentage: {numerator: 10}}`)
	r, _ := tbl.Match(req("h", "GET", "/"))
	f := r.Fault
	if f == nil || f.Delay != 2*time.Second || f.DelayPerMillion != 500000 || f.AbortStatus != 503 || f.AbortPerMillion != 100000 {
		t.Fatalf("fault %+v", f)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	var delayed, aborted int
	for range 10000 {
		d, a := f.Decide(rnd)
		if d > 0 {
			delayed++
		}
		if a == 503 {
			aborted++
		}
	}
	if delayed < 4800 || delayed > 5200 || aborted < 800 || aborted > 1200 {
		t.Errorf("delayed %d aborted %d of 10000, want ~5000 and ~1000", delayed, aborted)
	}
}

func TestCompileUnsupported(t *testing.T) {
	tests := []struct{ name, yaml, field string }{
		{"grpc match", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /, grpc: {}}, route: {cluster: c}}]}]}`, "match.grpc"},
		{"mirror", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c, request_mirror_policies: [{cluster: m}]}}]}]}`, "route.request_mirror_policies"},
		{"vhost headers", `{name: x, virtual_hosts: [{name: v, domains: ["*"], request_headers_to_remove: [a], routes: []}]}`, "request_headers_to_remove"},
		{"cluster header", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster_header: x}}]}]}`, "route.cluster_header"},
		{"retry on", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c, retry_policy: {retry_on: "envoy-ratelimited"}}}]}]}`, "retry_on"},
		{"duplicate domain", `{name: x, virtual_hosts: [{name: a, domains: [h]}, {name: b, domains: [H]}]}`, "two virtual hosts"},
		{"fault header delay", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {f: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, delay: {header_delay: {}}}}}]}]}`, "delay.header_delay"},
		{"unknown per-filter type", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}, typed_per_filter_config: {r: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}]}]}`, "typed_per_filter_config[r]"},
		{"bad regex", `{name: x, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {safe_regex: {regex: "("}}, route: {cluster: c}}]}]}`, "safe_regex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &routev3.RouteConfiguration{}
			fromYAML(t, tt.yaml, rc)
			_, err := Compile(rc)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Compile error %v, want one naming %q", err, tt.field)
			}
			if tt.name != "duplicate domain" && tt.name != "bad regex" && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v does not wrap ErrUnsupported", err)
			}
		})
	}
}

func TestDirectResponseAndClusterNotFound(t *testing.T) {
	tbl := compileYAML(t, `
name: d
virtual_hosts:
- name: r
  domains: ["*"]
  routes:
  - match: {path: /dr}
    direct_response: {status: 500, body: {inline_string: "backend not found"}}
  - match: {prefix: /}
    route:
      cluster_not_found_response_code: INTERNAL_SERVER_ERROR
      weighted_clusters: {clusters: [{name: a, weight: 1}]}`)
	r, _ := tbl.Match(req("h", "GET", "/dr"))
	if r.DirectResponse == nil || r.DirectResponse.Status != 500 || r.DirectResponse.Body != "backend not found" {
		t.Errorf("direct response %+v", r.DirectResponse)
	}
	r, _ = tbl.Match(req("h", "GET", "/x"))
	if r.ClusterNotFoundStatus != 500 {
		t.Errorf("cluster not found status %d, want 500", r.ClusterNotFoundStatus)
	}
}
