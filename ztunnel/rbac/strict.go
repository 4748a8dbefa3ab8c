package rbac

import (
	"google.golang.org/protobuf/types/known/emptypb"
	"istio.io/istio/pkg/workloadapi/security"
)

// StrictMTLS returns the policy istiod sends ztunnel for a STRICT
// PeerAuthentication: DENY any connection without a peer principal, so a
// plaintext connection (nil SrcIdentity) is denied and every mTLS one passes
// this policy. Scope NAMESPACE applies it to namespace; GLOBAL (for the root
// namespace) to the mesh.
func StrictMTLS(namespace, name string, scope security.Scope) *security.Authorization {
	return &security.Authorization{
		Name:      name,
		Namespace: namespace,
		Scope:     scope,
		Action:    security.Action_DENY,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
			NotPrincipals: []*security.StringMatch{{MatchType: &security.StringMatch_Presence{Presence: &emptypb.Empty{}}}},
		}}}}}},
	}
}

// RequiresMTLS reports whether policies deny every plaintext connection
// regardless of addresses and ports, i.e. a STRICT PeerAuthentication is in
// force. The plaintext inbound listener (15006) can use it to refuse early;
// Evaluate with a nil SrcIdentity gives the same answer per connection.
func RequiresMTLS(policies []*security.Authorization) bool {
	for _, p := range policies {
		if p.GetAction() != security.Action_DENY || p.GetDryRun() {
			continue
		}
		for _, g := range p.GetGroups() {
			if denyAllPlaintext(g) {
				return true
			}
		}
	}
	return false
}

// denyAllPlaintext: every Rules of g has a match whose only condition is a
// not_principals presence (or any not_principals/not_namespaces entry, which
// a plaintext peer always satisfies) and nothing else.
func denyAllPlaintext(g *security.Group) bool {
	if len(g.GetRules()) == 0 {
		return false
	}
	for _, r := range g.GetRules() {
		ok := false
		for _, m := range r.GetMatches() {
			if onlyIdentityNegations(m) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func onlyIdentityNegations(m *security.Match) bool {
	if len(m.GetNamespaces())+len(m.GetPrincipals())+len(m.GetServiceAccounts())+
		len(m.GetSourceIps())+len(m.GetNotSourceIps())+len(m.GetDestinationIps())+len(m.GetNotDestinationIps())+
		len(m.GetDestinationPorts())+len(m.GetNotDestinationPorts()) > 0 {
		return false
	}
	return len(m.GetNotPrincipals())+len(m.GetNotNamespaces())+len(m.GetNotServiceAccounts()) > 0
}
