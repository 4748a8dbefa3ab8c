package waypointxds_test

import (
	"testing"
	"unicode/utf8"

	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
)

// FuzzWaypointAuthorizationPolicy translates arbitrary AuthorizationPolicy
// specs (arbitrary bytes decoded as the spec's protobuf), aimed at the
// waypoint's Gateway or at a bound Service, into the waypoint's Envoy
// resources: Build must never panic, must report exactly one
// WaypointAccepted condition for the policy, and must produce resources that
// marshal and pass Envoy's validation rules, HTTP connection managers
// included.
func FuzzWaypointAuthorizationPolicy(f *testing.F) {
	for _, s := range waypointPolicySeeds() {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false, "p")
		f.Add(b, true, "p")
	}
	f.Fuzz(func(t *testing.T, specBytes []byte, toService bool, name string) {
		spec := &securityv1beta1.AuthorizationPolicy{}
		if proto.Unmarshal(specBytes, spec) != nil || name == "" || !utf8.ValidString(name) {
			return // names come from the API server: non-empty, valid UTF-8
		}
		ref := &typev1beta1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "waypoint"}
		if toService {
			ref = &typev1beta1.PolicyTargetReference{Kind: "Service", Name: "reviews"}
		}
		spec.TargetRef = nil
		spec.TargetRefs = []*typev1beta1.PolicyTargetReference{ref}
		in := waypointxds.Input{
			Waypoint: waypointxds.Waypoint{Name: "waypoint", Namespace: "default"},
			Bound: []waypointxds.Service{{
				Name: "reviews", Namespace: "default", Hostname: "reviews.default.svc.cluster.local", VIPs: []string{"10.96.0.10"},
				Ports:     []waypointxds.ServicePort{{Name: "http", Port: 9080, TargetPort: 9080, AppProtocol: "http"}},
				Endpoints: []waypointxds.Endpoint{{IP: "10.244.1.5", Node: "node-a", Ready: true, Identity: "spiffe://cluster.local/ns/default/sa/reviews"}},
			}},
			AuthorizationPolicies: []waypointxds.AuthorizationPolicy{{Name: name, Namespace: "default", Generation: 1, Spec: spec}},
		}
		out, conds := waypointxds.Build(in)
		n := 0
		for _, c := range conds {
			if c.Kind == waypointxds.KindAuthorizationPolicy && c.Name == name && c.Type == waypointxds.ConditionWaypointAccepted {
				n++
				if c.Message == "" || c.Reason == "" {
					t.Fatalf("condition without reason or message: %+v", c)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d WaypointAccepted conditions for the policy, want 1: %+v", n, conds)
		}
		var msgs []proto.Message
		for _, l := range out.Listeners {
			msgs = append(msgs, l)
			for _, fc := range l.GetFilterChains() {
				for _, nf := range fc.GetFilters() {
					if tc := nf.GetTypedConfig(); tc != nil {
						hcm := &hcmv3.HttpConnectionManager{}
						if err := tc.UnmarshalTo(hcm); err != nil {
							t.Fatalf("filter %s: %v", nf.GetName(), err)
						}
						msgs = append(msgs, hcm)
						for _, hf := range hcm.GetHttpFilters() {
							msgs = append(msgs, unpack(t, hf.GetTypedConfig()))
						}
					}
				}
			}
		}
		for _, r := range out.Routes {
			msgs = append(msgs, r)
			for _, vh := range r.GetVirtualHosts() {
				for _, a := range vh.GetTypedPerFilterConfig() {
					msgs = append(msgs, unpack(t, a))
				}
				for _, rt := range vh.GetRoutes() {
					for _, a := range rt.GetTypedPerFilterConfig() {
						msgs = append(msgs, unpack(t, a))
					}
				}
			}
		}
		for _, m := range msgs {
			if _, err := proto.Marshal(m); err != nil {
				t.Fatalf("marshal %T: %v", m, err)
			}
			// Envoy's own constraints (protoc-gen-validate), as Envoy would
			// check them before accepting the resource.
			if v, ok := m.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					t.Fatalf("%T is not valid Envoy config: %v", m, err)
				}
			}
		}
	})
}

// unpack decodes a typed config (RBAC, RBACPerRoute, router...).
func unpack(t *testing.T, a *anypb.Any) proto.Message {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("typed config %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

func waypointPolicySeeds() []*securityv1beta1.AuthorizationPolicy {
	return []*securityv1beta1.AuthorizationPolicy{
		{
			Action: securityv1beta1.AuthorizationPolicy_ALLOW,
			Rules: []*securityv1beta1.Rule{{
				From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
					Principals: []string{"cluster.local/ns/default/sa/productpage", "*/ns/app/*"}, Namespaces: []string{"default"},
					NotIpBlocks: []string{"10.0.0.0/8"}, RequestPrincipals: []string{"*"},
				}}},
				To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{
					Methods: []string{"GET", "HEAD"}, Paths: []string{"/api/*", "*/info", "/exact", "*"}, NotPaths: []string{"/admin/*"},
					Hosts: []string{"reviews*", "*.svc"}, Ports: []string{"9080"},
				}}},
				When: []*securityv1beta1.Condition{{Key: "request.headers[x-user]", Values: []string{"admin", "*"}}, {Key: "source.ip", Values: []string{"10.0.0.1"}}},
			}},
		},
		{
			Action: securityv1beta1.AuthorizationPolicy_DENY,
			Rules: []*securityv1beta1.Rule{
				{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Paths: []string{"/{*}/x", "/a/{**}"}, Ports: []string{"99999"}}}}},
				{When: []*securityv1beta1.Condition{{Key: "request.auth.claims[groups]", Values: []string{"x"}}, {Key: "destination.port", NotValues: []string{"abc"}}}},
				{},
			},
		},
		{Action: securityv1beta1.AuthorizationPolicy_CUSTOM},
		{Action: securityv1beta1.AuthorizationPolicy_AUDIT, Rules: []*securityv1beta1.Rule{{}}},
		{},
	}
}
