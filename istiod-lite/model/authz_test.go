package model

import (
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"istio.io/istio/pkg/workloadapi/security"
)

func TestConvertAuthorizationPolicyScopeAndAction(t *testing.T) {
	sel := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "a"}}
	tests := []struct {
		name       string
		ns         string
		spec       *securityv1beta1.AuthorizationPolicy
		wantSent   bool
		wantScope  security.Scope
		wantAction security.Action
		wantReason string
		wantGroups int
	}{
		{"namespace allow", "app", &securityv1beta1.AuthorizationPolicy{}, true, security.Scope_NAMESPACE, security.Action_ALLOW, ReasonAccepted, 0},
		{"root namespace is global", "istio-system", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY, Rules: []*securityv1beta1.Rule{{}}}, true, security.Scope_GLOBAL, security.Action_DENY, ReasonAccepted, 1},
		{"selector", "app", &securityv1beta1.AuthorizationPolicy{Selector: sel, Rules: []*securityv1beta1.Rule{{}}}, true, security.Scope_WORKLOAD_SELECTOR, security.Action_ALLOW, ReasonAccepted, 1},
		{"root namespace with selector", "istio-system", &securityv1beta1.AuthorizationPolicy{Selector: sel}, true, security.Scope_WORKLOAD_SELECTOR, security.Action_ALLOW, ReasonAccepted, 0},
		{"audit unsupported", "app", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_AUDIT}, false, 0, 0, ReasonUnsupportedValue, 0},
		{"custom unsupported", "app", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_CUSTOM}, false, 0, 0, ReasonUnsupportedValue, 0},
		{"targetRefs for waypoint", "app", &securityv1beta1.AuthorizationPolicy{TargetRefs: []*typev1beta1.PolicyTargetReference{{Kind: "Service", Name: "s"}}}, false, 0, 0, "", 0},
		{"bad port in allow drops rule", "app", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Ports: []string{"http"}}}}}}}, true, security.Scope_NAMESPACE, security.Action_ALLOW, ReasonInvalidValue, 0},
		{"non-L4 when in allow drops rule", "app", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{{When: []*securityv1beta1.Condition{{Key: "request.auth.claims[iss]", Values: []string{"x"}}}}}}, true, security.Scope_NAMESPACE, security.Action_ALLOW, ReasonUnsupportedValue, 0},
		{"trustDomains in deny ignored", "app", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY, Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{TrustDomains: []string{"other"}}}}}}}, true, security.Scope_NAMESPACE, security.Action_DENY, ReasonUnsupportedValue, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ConvertAuthorizationPolicy(AuthorizationPolicy{Name: "p", Namespace: tt.ns, Spec: tt.spec}, "istio-system")
			if (r.Authorization != nil) != tt.wantSent {
				t.Fatalf("sent = %v, want %v", r.Authorization != nil, tt.wantSent)
			}
			if tt.wantReason == "" {
				if r.Condition != nil || r.Diagnostic == nil {
					t.Errorf("want a diagnostic and no ztunnel condition, got %+v %+v", r.Condition, r.Diagnostic)
				}
			} else if r.Condition == nil || r.Condition.Reason != tt.wantReason || r.Condition.Status != (tt.wantReason == ReasonAccepted) {
				t.Errorf("condition = %+v, want reason %s", r.Condition, tt.wantReason)
			}
			if a := r.Authorization; a != nil {
				if a.Scope != tt.wantScope || a.Action != tt.wantAction || len(a.Groups) != tt.wantGroups {
					t.Errorf("got scope %v action %v %d groups, want %v %v %d", a.Scope, a.Action, len(a.Groups), tt.wantScope, tt.wantAction, tt.wantGroups)
				}
				if a.Name != "p" || a.Namespace != tt.ns {
					t.Errorf("name %s/%s", a.Namespace, a.Name)
				}
			}
		})
	}
}
