package model_test

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
)

// FuzzConvertAuthorizationPolicy translates arbitrary AuthorizationPolicy
// specs (arbitrary bytes decoded as the spec's protobuf) for ztunnel, alone
// and through Build: it must never panic and must stay fail-closed — a
// DENY policy keeps every rule, an ALLOW policy never gains one, a policy
// that is not fully accepted says why, and what goes to ztunnel is well
// formed (ports 1-65535, addresses of 4 or 16 bytes with a fitting prefix
// length) and survives a protobuf round trip.
func FuzzConvertAuthorizationPolicy(f *testing.F) {
	for _, s := range policySeeds() {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "app", "p", false)
	}
	f.Add([]byte{0x0a, 0x00}, "istio-system", "mesh", true)
	f.Fuzz(func(t *testing.T, specBytes []byte, ns, name string, dryRun bool) {
		spec := &securityv1beta1.AuthorizationPolicy{}
		if proto.Unmarshal(specBytes, spec) != nil || !utf8.ValidString(ns) || !utf8.ValidString(name) {
			return // names come from the API server: JSON, valid UTF-8
		}
		p := model.AuthorizationPolicy{Name: name, Namespace: ns, DryRun: dryRun, Spec: spec}
		res := model.ConvertAuthorizationPolicy(p, "istio-system")
		checkPolicyResult(t, spec, p, res)

		// The whole build, with a pod the policy may select.
		snap := model.Build(model.Input{
			Namespaces: []model.Namespace{{Name: ns, Labels: map[string]string{"istio.io/dataplane-mode": "ambient"}}},
			Pods: []model.Pod{{Name: "server", Namespace: ns, Labels: spec.GetSelector().GetMatchLabels(), ServiceAccount: "server",
				IPs: []netip.Addr{netip.MustParseAddr("10.0.1.1")}, NodeName: "node-a", Ready: true, Phase: "Running"}},
			AuthorizationPolicies: []model.AuthorizationPolicy{p},
		}, model.Config{})
		for _, r := range snap.Resources()[model.TypeAuthorization] {
			if _, err := proto.Marshal(r); err != nil {
				t.Fatalf("marshal %v: %v", r, err)
			}
		}
	})
}

func checkPolicyResult(t *testing.T, spec *securityv1beta1.AuthorizationPolicy, p model.AuthorizationPolicy, res model.PolicyResult) {
	t.Helper()
	if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
		if res.Authorization != nil || res.Diagnostic == nil {
			t.Fatalf("waypoint policy (targetRefs) sent to ztunnel or without diagnostic: %+v", res)
		}
		return
	}
	if res.Condition == nil {
		t.Fatal("no ZtunnelAccepted condition")
	}
	if res.Condition.Object.Name != p.Name || res.Condition.Object.Namespace != p.Namespace || res.Condition.Message == "" {
		t.Fatalf("condition %+v does not name the policy or say why", res.Condition)
	}
	out := res.Authorization
	switch spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_ALLOW, securityv1beta1.AuthorizationPolicy_DENY:
	default:
		if out != nil || res.Condition.Status {
			t.Fatalf("action %v sent to ztunnel or accepted", spec.GetAction())
		}
		return
	}
	if out == nil {
		t.Fatalf("%v policy not translated", spec.GetAction())
	}
	if out.GetName() != p.Name || out.GetNamespace() != p.Namespace || out.GetDryRun() != p.DryRun {
		t.Fatalf("translated policy %s/%s (dry run %v), want %s/%s (%v)", out.GetNamespace(), out.GetName(), out.GetDryRun(), p.Namespace, p.Name, p.DryRun)
	}
	rules := len(spec.GetRules())
	if spec.GetAction() == securityv1beta1.AuthorizationPolicy_DENY {
		if out.GetAction() != security.Action_DENY || len(out.GetGroups()) != rules {
			t.Fatalf("DENY policy with %d rules became %v with %d groups: a DENY rule must never be dropped", rules, out.GetAction(), len(out.GetGroups()))
		}
	} else {
		if out.GetAction() != security.Action_ALLOW || len(out.GetGroups()) > rules {
			t.Fatalf("ALLOW policy with %d rules became %v with %d groups", rules, out.GetAction(), len(out.GetGroups()))
		}
		if res.Condition.Status && len(out.GetGroups()) != rules {
			t.Fatalf("accepted ALLOW policy lost rules: %d of %d", len(out.GetGroups()), rules)
		}
	}
	if !res.Condition.Status && res.Condition.Reason == model.ReasonInvalidValue && !strings.Contains(res.Condition.Message, "rules[") {
		t.Fatalf("invalid-value condition does not name the field: %q", res.Condition.Message)
	}
	for _, g := range out.GetGroups() {
		for _, r := range g.GetRules() {
			for _, m := range r.GetMatches() {
				for _, port := range append(m.GetDestinationPorts(), m.GetNotDestinationPorts()...) {
					if port == 0 || port > 65535 {
						t.Fatalf("port %d sent to ztunnel", port)
					}
				}
				for _, lists := range [][]*security.Address{m.GetSourceIps(), m.GetNotSourceIps(), m.GetDestinationIps(), m.GetNotDestinationIps()} {
					for _, a := range lists {
						if n := len(a.GetAddress()); (n != 4 && n != 16) || a.GetLength() > uint32(8*n) {
							t.Fatalf("address %v/%d sent to ztunnel", a.GetAddress(), a.GetLength())
						}
					}
				}
			}
		}
	}
	b, err := proto.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	again := &security.Authorization{}
	if err := proto.Unmarshal(b, again); err != nil || !proto.Equal(again, out) {
		t.Fatalf("round trip: %v", err)
	}
}

func policySeeds() []*securityv1beta1.AuthorizationPolicy {
	return []*securityv1beta1.AuthorizationPolicy{
		{ // L4 ALLOW with every source and destination field
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "server"}},
			Action:   securityv1beta1.AuthorizationPolicy_ALLOW,
			Rules: []*securityv1beta1.Rule{{
				From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
					Principals: []string{"cluster.local/ns/app/sa/client", "*"}, NotPrincipals: []string{"*evil"},
					Namespaces: []string{"app*"}, NotNamespaces: []string{"kube-system"},
					ServiceAccounts: []string{"client", "other/sa"}, IpBlocks: []string{"10.0.0.0/8", "fd00::1"}, NotIpBlocks: []string{"10.9.0.0/16"},
				}}},
				To:   []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Ports: []string{"8080"}, NotPorts: []string{"9090"}}}},
				When: []*securityv1beta1.Condition{{Key: "source.ip", Values: []string{"10.0.0.1"}}, {Key: "destination.port", NotValues: []string{"22"}}},
			}},
		},
		{ // DENY with HTTP-only fields and invalid values
			Action: securityv1beta1.AuthorizationPolicy_DENY,
			Rules: []*securityv1beta1.Rule{
				{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Methods: []string{"GET"}, Paths: []string{"/admin"}, Ports: []string{"99999"}}}}},
				{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{RequestPrincipals: []string{"*"}, IpBlocks: []string{"not-an-ip"}}}}, When: []*securityv1beta1.Condition{{Key: "request.headers[x]", Values: []string{"a"}}}},
				{},
			},
		},
		{ // ALLOW with an HTTP attribute: the rule is dropped
			Action: securityv1beta1.AuthorizationPolicy_ALLOW,
			Rules:  []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Paths: []string{"/x"}}}}}, {}},
		},
		{Action: securityv1beta1.AuthorizationPolicy_CUSTOM, Rules: []*securityv1beta1.Rule{{}}},
		{TargetRefs: []*typev1beta1.PolicyTargetReference{{Kind: "Service", Name: "reviews"}}, Action: securityv1beta1.AuthorizationPolicy_ALLOW},
		{}, // allow-nothing
	}
}
