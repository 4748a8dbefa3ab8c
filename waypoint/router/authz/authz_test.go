package authz

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

func compile(t *testing.T, y string) *Engine {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rbacfilterv3.RBAC{}
	if err := protojson.Unmarshal(js, cfg); err != nil {
		t.Fatalf("protojson: %v", err)
	}
	e, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func id(ns, sa string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
}

const allowCfg = `
rules:
  action: ALLOW
  policies:
    public:
      permissions:
      - and_rules:
          rules:
          - header: {name: ":method", string_match: {exact: GET}}
          - url_path: {path: {prefix: /public}}
      principals: [{any: true}]
    admin:
      permissions:
      - and_rules:
          rules:
          - header: {name: ":method", string_match: {exact: POST}}
          - url_path: {path: {exact: /admin}}
      principals:
      - authenticated: {principal_name: {exact: spiffe://cluster.local/ns/default/sa/admin}}
    ns-port:
      permissions:
      - and_rules:
          rules:
          - destination_port: 8080
          - not_rule: {header: {name: x-block, present_match: true}}
      principals:
      - or_ids:
          ids:
          - authenticated: {principal_name: {safe_regex: {regex: ".*/ns/trusted/.*"}}}
          - header: {name: x-internal, string_match: {exact: "1"}}
    host:
      permissions:
      - header: {name: ":authority", string_match: {safe_regex: {regex: "(?i)api\\.example\\.com(:[0-9]+)?"}}}
      principals:
      - and_ids:
          ids:
          - authenticated: {}
          - not_id: {authenticated: {principal_name: {suffix: /sa/banned}}}
`

func TestEvaluateAllow(t *testing.T) {
	e := compile(t, allowCfg)
	tests := []struct {
		name   string
		req    Request
		allow  bool
		policy string
	}{
		{"GET /public anonymous", Request{Method: "GET", Path: "/public/x"}, true, "public"},
		{"GET /public with query", Request{Method: "GET", Path: "/public?x=1"}, true, "public"},
		{"POST /public", Request{Method: "POST", Path: "/public"}, false, ""},
		{"POST /admin by admin", Request{Method: "POST", Path: "/admin", Peer: id("default", "admin")}, true, "admin"},
		{"POST /admin by other", Request{Method: "POST", Path: "/admin", Peer: id("default", "sleep")}, false, ""},
		{"POST /admin unauthenticated", Request{Method: "POST", Path: "/admin"}, false, ""},
		{"url_path ignores query", Request{Method: "POST", Path: "/admin?x=/y", Peer: id("default", "admin")}, true, "admin"},
		{"port and namespace", Request{Method: "PUT", Path: "/", DestinationPort: 8080, Peer: id("trusted", "x")}, true, "ns-port"},
		{"port wrong", Request{Method: "PUT", Path: "/", DestinationPort: 9090, Peer: id("trusted", "x")}, false, ""},
		{"namespace wrong", Request{Method: "PUT", Path: "/", DestinationPort: 8080, Peer: id("other", "x")}, false, ""},
		{"principal header alternative", Request{Method: "PUT", Path: "/", DestinationPort: 8080, Headers: http.Header{"X-Internal": {"1"}}}, true, "ns-port"},
		{"not_rule blocks", Request{Method: "PUT", Path: "/", DestinationPort: 8080, Peer: id("trusted", "x"), Headers: http.Header{"X-Block": {""}}}, false, ""},
		{"host any case with port", Request{Method: "PUT", Host: "API.example.com:443", Path: "/", Peer: id("a", "b")}, true, "host"},
		{"host needs authenticated peer", Request{Method: "PUT", Host: "api.example.com", Path: "/"}, false, ""},
		{"not_id excludes banned", Request{Method: "PUT", Host: "api.example.com", Path: "/", Peer: id("a", "banned")}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, pol := e.Evaluate(&tt.req)
			if ok != tt.allow || pol != tt.policy {
				t.Errorf("Evaluate = %v %q, want %v %q", ok, pol, tt.allow, tt.policy)
			}
		})
	}
}

func TestChainDenyFirst(t *testing.T) {
	deny := compile(t, `
rules:
  action: DENY
  policies:
    deny-sleep-admin:
      permissions: [{url_path: {path: {prefix: /admin}}}]
      principals: [{authenticated: {principal_name: {exact: spiffe://cluster.local/ns/default/sa/sleep}}}]`)
	allow := compile(t, allowCfg)
	filters := []Filter{{Name: "deny", Engine: deny}, {Name: "allow", Engine: allow}}
	tests := []struct {
		name      string
		overrides map[string]*Engine
		req       Request
		want      Decision
	}{
		{"deny wins over allow", nil, Request{Method: "POST", Path: "/admin", Peer: id("default", "sleep")}, Decision{false, "deny", "deny-sleep-admin"}},
		{"allowed", nil, Request{Method: "POST", Path: "/admin", Peer: id("default", "admin")}, Decision{true, "", "admin"}},
		{"no allow policy matches", nil, Request{Method: "DELETE", Path: "/x"}, Decision{false, "allow", ""}},
		{"override disables allow", map[string]*Engine{"allow": AllowAll}, Request{Method: "DELETE", Path: "/x"}, Decision{true, "", ""}},
		{"override disables deny", map[string]*Engine{"deny": AllowAll}, Request{Method: "GET", Path: "/admin", Peer: id("default", "sleep")}, Decision{false, "allow", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Chain(filters, tt.overrides, &tt.req); got != tt.want {
				t.Errorf("Chain = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNoRulesAllowsAll(t *testing.T) {
	e := compile(t, `{}`)
	if ok, _ := e.Evaluate(&Request{Method: "DELETE", Path: "/"}); !ok {
		t.Error("RBAC without rules denied a request")
	}
	empty := compile(t, `{rules: {action: ALLOW}}`)
	if ok, _ := empty.Evaluate(&Request{Method: "GET", Path: "/"}); ok {
		t.Error("ALLOW with no policies allowed a request")
	}
	emptyDeny := compile(t, `{rules: {action: DENY}}`)
	if ok, _ := emptyDeny.Evaluate(&Request{Method: "GET", Path: "/"}); !ok {
		t.Error("DENY with no policies denied a request")
	}
}

func TestCompileUnsupported(t *testing.T) {
	tests := []struct{ name, yaml, field string }{
		{"source ip", `{rules: {policies: {p: {permissions: [{any: true}], principals: [{direct_remote_ip: {address_prefix: 10.0.0.0}}]}}}}`, "principals[0]"},
		{"metadata", `{rules: {policies: {p: {permissions: [{metadata: {filter: x}}], principals: [{any: true}]}}}}`, "permissions[0]"},
		{"log action", `{rules: {action: LOG}}`, "action"},
		{"matcher", `{matcher: {matcher_list: {matchers: []}}}`, "rbac.matcher"},
		{"condition", `{rules: {policies: {p: {permissions: [{any: true}], principals: [{any: true}], condition: {}}}}}`, "condition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, err := yaml.YAMLToJSON([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg := &rbacfilterv3.RBAC{}
			if err := protojson.Unmarshal(js, cfg); err != nil {
				t.Fatalf("protojson: %v", err)
			}
			_, err = Compile(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field) || !errors.Is(err, strmatch.ErrUnsupported) {
				t.Fatalf("Compile error %v, want ErrUnsupported naming %q", err, tt.field)
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	js, _ := yaml.YAMLToJSON([]byte(allowCfg))
	cfg := &rbacfilterv3.RBAC{}
	if err := protojson.Unmarshal(js, cfg); err != nil {
		b.Fatal(err)
	}
	e, err := Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	r := &Request{Method: "PUT", Host: "api.example.com", Path: "/x", DestinationPort: 1, Peer: id("a", "b")}
	r.PeerURI = r.Peer.String()
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(r)
	}
}
