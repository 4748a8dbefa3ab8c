package waypointxds

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1beta1 "istio.io/api/security/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestIsHTTPPort(t *testing.T) {
	tests := []struct {
		p    ServicePort
		http bool
		h2   bool
	}{
		{ServicePort{Name: "http"}, true, false},
		{ServicePort{Name: ""}, true, false},
		{ServicePort{Name: "grpc-api"}, true, true},
		{ServicePort{Name: "x", AppProtocol: "kubernetes.io/h2c"}, true, true},
		{ServicePort{Name: "tcp-db"}, false, false},
		{ServicePort{Name: "http", AppProtocol: "tcp"}, false, false},
		{ServicePort{Name: "mysql"}, false, false},
		{ServicePort{Name: "https"}, false, false},
	}
	for _, tt := range tests {
		if got := isHTTPPort(tt.p); got != tt.http {
			t.Errorf("isHTTPPort(%+v) = %v, want %v", tt.p, got, tt.http)
		}
		if got := isHTTP2Port(tt.p); got != tt.h2 {
			t.Errorf("isHTTP2Port(%+v) = %v, want %v", tt.p, got, tt.h2)
		}
	}
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"", "", ""},
		{`{"delay":{"fixedDelay":"2s","percentage":50}}`, `{"delay":{"fixedDelay":"2s","percentage":{"numerator":500000,"denominator":"MILLION"}}}`, ""},
		{`{"abort":{"httpStatus":503,"percentage":0.1}}`, `{"abort":{"httpStatus":503,"percentage":{"numerator":1000,"denominator":"MILLION"}}}`, ""},
		{`{"abort":{"httpStatus":503}}`, `{"abort":{"httpStatus":503,"percentage":{"numerator":1000000,"denominator":"MILLION"}}}`, ""},
		{`{"abort":{"httpStatus":99}}`, "", "httpStatus 99"},
		{`{"delay":{"fixedDelay":"soon"}}`, "", "fixedDelay"},
		{`{"delay":{"fixedDelay":"1s","percentage":101}}`, "", "percentage 101"},
		{`{"dealy":{}}`, "", "unknown field"},
		{`{}`, "", "set delay and/or abort"},
	}
	for _, tt := range tests {
		f, err := parseFault(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseFault(%s) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFault(%s): %v", tt.in, err)
			continue
		}
		got := ""
		if f != nil {
			got = protojson.Format(f)
			got = strings.Join(strings.Fields(got), "")
		}
		if got != tt.want {
			t.Errorf("parseFault(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestPrincipalTranslation(t *testing.T) {
	tests := []struct {
		fn   func(string) string
		in   string
		want string
	}{
		{func(v string) string { return protojson.Format(principalID(v)) }, "cluster.local/ns/a/sa/b", `"exact":"spiffe://cluster.local/ns/a/sa/b"`},
		{func(v string) string { return protojson.Format(principalID(v)) }, "spiffe://td/ns/a/sa/b", `"exact":"spiffe://td/ns/a/sa/b"`},
		{func(v string) string { return protojson.Format(principalID(v)) }, "cluster.local/ns/a/*", `"prefix":"spiffe://cluster.local/ns/a/"`},
		{func(v string) string { return protojson.Format(principalID(v)) }, "*/sa/b", `"suffix":"/sa/b"`},
		{func(v string) string { return protojson.Format(principalID(v)) }, "*", `"regex":".+"`},
		{func(v string) string { return protojson.Format(namespaceID(v)) }, "foo", `"regex":".*/ns/foo/.*"`},
		{func(v string) string { return protojson.Format(namespaceID(v)) }, "te.st*", `"regex":".*/ns/te\\.st[^/]*/.*"`},
		{func(v string) string { return protojson.Format(hostPerm(v)) }, "*.example.com", `"regex":"(?i).*\\.example\\.com(:[0-9]+)?"`},
	}
	for _, tt := range tests {
		got := strings.Join(strings.Fields(tt.fn(tt.in)), "")
		if !strings.Contains(got, tt.want) {
			t.Errorf("%q → %s, want it to contain %s", tt.in, got, tt.want)
		}
	}
}

func TestTranslatePolicyFailClosed(t *testing.T) {
	b := &builder{td: "cluster.local"}
	rule := func(src *securityv1beta1.Source) []*securityv1beta1.Rule {
		return []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: src}}}}
	}
	tests := []struct {
		name     string
		spec     *securityv1beta1.AuthorizationPolicy
		policies int
		deny     bool
		problem  string
	}{
		{"allow ok", &securityv1beta1.AuthorizationPolicy{Rules: rule(&securityv1beta1.Source{Namespaces: []string{"a"}})}, 1, false, ""},
		{"allow with ipBlocks drops rule", &securityv1beta1.AuthorizationPolicy{Rules: rule(&securityv1beta1.Source{IpBlocks: []string{"1.2.3.4"}})}, 0, false, "ipBlocks not supported: rule dropped"},
		{"deny with requestPrincipals keeps rule", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY,
			Rules: rule(&securityv1beta1.Source{RequestPrincipals: []string{"x"}})}, 1, true, "field ignored"},
		{"custom denies all", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_CUSTOM}, 1, true, "CUSTOM"},
		{"audit ignored", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_AUDIT}, 0, false, "AUDIT"},
		{"unknown when key", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{{When: []*securityv1beta1.Condition{{Key: "request.auth.claims[iss]", Values: []string{"x"}}}}}}, 0, false, "request.auth.claims"},
		{"path template", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Paths: []string{"/a/{*}"}}}}}}}, 0, false, "template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pols, deny, problems := b.translatePolicy(AuthorizationPolicy{Name: "p", Namespace: "ns", Spec: tt.spec})
			if len(pols) != tt.policies || deny != tt.deny {
				t.Errorf("got %d policies deny=%v, want %d deny=%v", len(pols), deny, tt.policies, tt.deny)
			}
			msg := strings.Join(problems, "; ")
			if (tt.problem == "") != (msg == "") || !strings.Contains(msg, tt.problem) {
				t.Errorf("problems %q, want %q", msg, tt.problem)
			}
		})
	}
}

func TestSortCandidatesPrecedence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cs := []candidate{
		{key: "prefix-short", pathRank: 1, pathLen: 1, created: t0},
		{key: "prefix-long", pathRank: 1, pathLen: 8, created: t0},
		{key: "exact", pathRank: 0, pathLen: 2, created: t0},
		{key: "regex", pathRank: 2, pathLen: 50, created: t0},
		{key: "prefix-long-method", pathRank: 1, pathLen: 8, method: true, created: t0},
		{key: "prefix-long-headers", pathRank: 1, pathLen: 8, headers: 2, created: t0},
		{key: "prefix-long-older", pathRank: 1, pathLen: 8, headers: 2, created: t0.Add(-time.Hour)},
	}
	var got []string
	for _, c := range sortCandidates(cs) {
		got = append(got, c.key)
	}
	want := "exact prefix-long-method prefix-long-older prefix-long-headers prefix-long prefix-short regex"
	if strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestHTTPMatchPathPrefix(t *testing.T) {
	typ := gatewayv1.PathMatchPathPrefix
	tests := []struct{ value, want string }{
		{"/", `"prefix":"/"`},
		{"/api", `"pathSeparatedPrefix":"/api"`},
		{"/api/", `"pathSeparatedPrefix":"/api"`},
	}
	for _, tt := range tests {
		v := tt.value
		m, _, err := httpMatch(gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: &typ, Value: &v}})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(strings.Fields(protojson.Format(m)), ""); !strings.Contains(got, tt.want) {
			t.Errorf("PathPrefix %q → %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestBareShortNameOnlyWhenUnique(t *testing.T) {
	in := Input{
		Waypoint: Waypoint{Name: "wp", Namespace: "a"},
		Bound: []Service{
			{Name: "web", Namespace: "a", Hostname: "web.a.svc.cluster.local", Ports: []ServicePort{{Name: "http", Port: 80}}},
			{Name: "web", Namespace: "b", Hostname: "web.b.svc.cluster.local", Ports: []ServicePort{{Name: "http", Port: 80}}},
		},
	}
	out, _ := Build(in)
	for _, vh := range out.Routes[0].VirtualHosts {
		for _, d := range vh.Domains {
			if d == "web" || d == "web:80" {
				t.Errorf("virtual host %s claims ambiguous short name %q", vh.Name, d)
			}
		}
		if len(vh.Domains) != 6 {
			t.Errorf("virtual host %s domains %v, want FQDN, .svc and .ns forms with and without port", vh.Name, vh.Domains)
		}
	}
}

func TestAttachConditions(t *testing.T) {
	svc := func(name, ns string) Service {
		return Service{Name: name, Namespace: ns, Hostname: name + "." + ns + ".svc.cluster.local", Ports: []ServicePort{{Name: "http", Port: 80}}}
	}
	port := func(p int32) *gatewayv1.PortNumber { v := gatewayv1.PortNumber(p); return &v }
	kind := gatewayv1.Kind("Service")
	group := gatewayv1.Group("")
	route := func(ns string, parent gatewayv1.ParentReference, filters ...gatewayv1.HTTPRouteFilter) *gatewayv1.HTTPRoute {
		r := &gatewayv1.HTTPRoute{}
		r.Name, r.Namespace = "r", ns
		r.Spec.ParentRefs = []gatewayv1.ParentReference{parent}
		r.Spec.Rules = []gatewayv1.HTTPRouteRule{{Filters: filters, BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
			BackendObjectReference: gatewayv1.BackendObjectReference{Name: "backend", Port: port(80)}}}}}}
		return r
	}
	tests := []struct {
		name     string
		route    *gatewayv1.HTTPRoute
		want     string // "Type=Status/Reason" of the Accepted condition, "" for none
		clusters int
	}{
		{"bound service", route("a", gatewayv1.ParentReference{Kind: &kind, Group: &group, Name: "web"}), "Accepted=True/Accepted", 2},
		{"wrong port", route("a", gatewayv1.ParentReference{Kind: &kind, Group: &group, Name: "web", Port: port(81)}), "Accepted=False/NoMatchingParent", 1},
		{"consumer route", route("b", gatewayv1.ParentReference{Kind: &kind, Group: &group, Name: "web", Namespace: ptrNS("a")}), "Accepted=False/NotAllowedByListeners", 1},
		{"unbound service", route("a", gatewayv1.ParentReference{Kind: &kind, Group: &group, Name: "backend"}), "", 1},
		{"other gateway", route("a", gatewayv1.ParentReference{Name: "other"}), "", 1},
		{"unsupported filter sends no cluster", route("a", gatewayv1.ParentReference{Kind: &kind, Group: &group, Name: "web"},
			gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestMirror}), "Accepted=False/UnsupportedValue", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Waypoint: Waypoint{Name: "wp", Namespace: "a"}, Bound: []Service{svc("web", "a")},
				Services: map[Key]Service{{"a", "backend"}: svc("backend", "a")}, HTTPRoutes: []*gatewayv1.HTTPRoute{tt.route}}
			out, conds := Build(in)
			got := ""
			for _, c := range conds {
				if c.Type == "Accepted" {
					got = c.Type + "=" + string(c.Status) + "/" + c.Reason
				}
			}
			if got != tt.want || len(out.Clusters) != tt.clusters {
				t.Errorf("Accepted %q with %d clusters, want %q with %d (conditions %+v)", got, len(out.Clusters), tt.want, tt.clusters, conds)
			}
		})
	}
}

func ptrNS(s string) *gatewayv1.Namespace { v := gatewayv1.Namespace(s); return &v }

func TestResourcesTypeURLs(t *testing.T) {
	out, _ := Build(Input{Waypoint: Waypoint{Name: "wp", Namespace: "a"},
		Bound: []Service{{Name: "web", Namespace: "a", Hostname: "web.a.svc.cluster.local", Ports: []ServicePort{{Name: "http", Port: 80}}}}})
	for typ, byName := range out.Resources() {
		if len(byName) != 1 {
			t.Errorf("%s: %d resources, want 1", typ, len(byName))
		}
		for name, m := range byName {
			if got := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()); got != typ {
				t.Errorf("%s listed under %s, is %s", name, typ, got)
			}
		}
	}
}
