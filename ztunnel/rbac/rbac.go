package rbac

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Conn is what L4 policy is evaluated against.
type Conn struct {
	SrcIP   netip.Addr
	DstIP   netip.Addr
	DstPort uint16
	// SrcIdentity is the verified peer identity; nil for plaintext.
	SrcIdentity *spiffe.Identity
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allow bool
	// Policy is the deciding policy: the matching DENY policy or the
	// matching ALLOW policy; nil when no policy applied or no ALLOW policy
	// matched. (A pointer rather than a name keeps Evaluate allocation-free;
	// see PolicyName.)
	Policy *security.Authorization
	// Reason explains the decision (constant strings, for logs and metrics).
	Reason string
	// DryRun is the decision had dry-run policies been enforced too. It
	// equals the enforced decision when there is no dry-run policy.
	DryRun Verdict
}

// Verdict is a decision without its own dry-run shadow.
type Verdict struct {
	Allow  bool
	Policy *security.Authorization
	Reason string
}

// PolicyName returns "namespace/name" of the deciding policy, or "".
func (d Decision) PolicyName() string { return Name(d.Policy) }

// Name returns "namespace/name" of p, or "" for nil.
func Name(p *security.Authorization) string {
	if p == nil {
		return ""
	}
	return p.GetNamespace() + "/" + p.GetName()
}

// Reasons.
const (
	ReasonDenyMatched  = "denied by a DENY policy"
	ReasonNoAllowMatch = "no ALLOW policy matched"
	ReasonAllowMatched = "allowed by an ALLOW policy"
	ReasonNoPolicy     = "no ALLOW policy applies"
)

// Evaluate applies Istio's L4 authorization semantics: any matching DENY
// policy denies; otherwise, if any ALLOW policy applies, one must match;
// with no ALLOW policy the connection is allowed. An ALLOW policy without
// groups matches nothing, so it makes the workload deny-all. Dry-run
// policies do not affect Allow; their effect is reported in DryRun.
// Evaluate does not allocate.
func Evaluate(policies []*security.Authorization, conn Conn) Decision {
	v := evaluate(policies, &conn, false)
	d := Decision{Allow: v.Allow, Policy: v.Policy, Reason: v.Reason, DryRun: v}
	for _, p := range policies {
		if p.GetDryRun() {
			d.DryRun = evaluate(policies, &conn, true)
			break
		}
	}
	return d
}

func evaluate(policies []*security.Authorization, conn *Conn, withDryRun bool) Verdict {
	for _, p := range policies {
		if p.GetAction() == security.Action_DENY && (withDryRun || !p.GetDryRun()) && Matches(p, conn) {
			return Verdict{Allow: false, Policy: p, Reason: ReasonDenyMatched}
		}
	}
	haveAllow := false
	for _, p := range policies {
		if p.GetAction() != security.Action_ALLOW || (!withDryRun && p.GetDryRun()) {
			continue
		}
		haveAllow = true
		if Matches(p, conn) {
			return Verdict{Allow: true, Policy: p, Reason: ReasonAllowMatched}
		}
	}
	if haveAllow {
		return Verdict{Allow: false, Reason: ReasonNoAllowMatch}
	}
	return Verdict{Allow: true, Reason: ReasonNoPolicy}
}

// Matches reports whether conn matches policy p (ignoring its action).
func Matches(p *security.Authorization, conn *Conn) bool {
	for _, g := range p.GetGroups() {
		if matchGroup(g, conn) {
			return true
		}
	}
	return false
}

func matchGroup(g *security.Group, conn *Conn) bool {
	// Rules are AND-ed. A group without rules matches everything, as an
	// Istio rule with no from/to/when does.
	for _, r := range g.GetRules() {
		if !matchRules(r, conn) {
			return false
		}
	}
	return true
}

func matchRules(r *security.Rules, conn *Conn) bool {
	// Matches are OR-ed (upstream ztunnel); no matches matches everything.
	if len(r.GetMatches()) == 0 {
		return true
	}
	for _, m := range r.GetMatches() {
		if matchMatch(m, conn) {
			return true
		}
	}
	return false
}

func matchMatch(m *security.Match, c *Conn) bool {
	if isEmpty(m) {
		return false // upstream skips empty matches: they match nothing
	}
	// Namespaces are matched against the peer's namespace, "" for plaintext
	// (as upstream), so only degenerate patterns (exact "", prefix "")
	// match a plaintext peer.
	ns := ""
	if c.SrcIdentity != nil {
		ns = c.SrcIdentity.Namespace
	}
	return posNeg(m.GetDestinationPorts(), m.GetNotDestinationPorts(), func(p uint32) bool { return p == uint32(c.DstPort) }) &&
		posNeg(m.GetDestinationIps(), m.GetNotDestinationIps(), func(a *security.Address) bool { return addrContains(a, c.DstIP) }) &&
		posNeg(m.GetSourceIps(), m.GetNotSourceIps(), func(a *security.Address) bool { return addrContains(a, c.SrcIP) }) &&
		posNeg(m.GetNamespaces(), m.GetNotNamespaces(), func(s *security.StringMatch) bool { return matchString(s, ns) }) &&
		posNeg(m.GetServiceAccounts(), m.GetNotServiceAccounts(), func(s *security.ServiceAccountMatch) bool {
			return c.SrcIdentity != nil && s.GetNamespace() == c.SrcIdentity.Namespace && s.GetServiceAccount() == c.SrcIdentity.ServiceAccount
		}) &&
		posNeg(m.GetPrincipals(), m.GetNotPrincipals(), func(s *security.StringMatch) bool {
			return c.SrcIdentity != nil && matchPrincipal(s, c.SrcIdentity)
		})
}

func isEmpty(m *security.Match) bool {
	return len(m.GetNamespaces())+len(m.GetNotNamespaces())+len(m.GetServiceAccounts())+len(m.GetNotServiceAccounts())+
		len(m.GetPrincipals())+len(m.GetNotPrincipals())+len(m.GetSourceIps())+len(m.GetNotSourceIps())+
		len(m.GetDestinationIps())+len(m.GetNotDestinationIps())+len(m.GetDestinationPorts())+len(m.GetNotDestinationPorts()) == 0
}

// posNeg is upstream's matches_internal: an empty positive list matches,
// otherwise one value must match; any matching negative value excludes.
func posNeg[T any](pos, neg []T, pred func(T) bool) bool {
	if len(pos) > 0 {
		ok := false
		for _, v := range pos {
			if pred(v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, v := range neg {
		if pred(v) {
			return false
		}
	}
	return true
}

func addrContains(a *security.Address, ip netip.Addr) bool {
	base, ok := netip.AddrFromSlice(a.GetAddress())
	if !ok || !ip.IsValid() {
		return false
	}
	base, ip = base.Unmap(), ip.Unmap()
	if base.BitLen() != ip.BitLen() {
		return false
	}
	// As upstream (IpNet::new(ip, length)): length 0 is /0, everything.
	p, err := base.Prefix(int(a.GetLength()))
	return err == nil && p.Contains(ip)
}

func matchString(m *security.StringMatch, s string) bool {
	switch t := m.GetMatchType().(type) {
	case *security.StringMatch_Exact:
		return s == t.Exact
	case *security.StringMatch_Prefix:
		return strings.HasPrefix(s, t.Prefix)
	case *security.StringMatch_Suffix:
		return strings.HasSuffix(s, t.Suffix)
	case *security.StringMatch_Presence:
		return s != ""
	}
	return false
}

// matchPrincipal matches against the identity written as Istio principals
// are, "<td>/ns/<ns>/sa/<sa>" (upstream strips "spiffe://" from the peer
// identity, not from the pattern), without building the string.
func matchPrincipal(m *security.StringMatch, id *spiffe.Identity) bool {
	parts := [5]string{id.TrustDomain, "/ns/", id.Namespace, "/sa/", id.ServiceAccount}
	switch t := m.GetMatchType().(type) {
	case *security.StringMatch_Exact:
		return equals(parts, t.Exact)
	case *security.StringMatch_Prefix:
		return hasPrefix(parts, t.Prefix)
	case *security.StringMatch_Suffix:
		return hasSuffix(parts, t.Suffix)
	case *security.StringMatch_Presence:
		return id.TrustDomain != "" || id.Namespace != "" || id.ServiceAccount != ""
	}
	return false
}

// hasPrefix reports whether concat(parts) starts with p.
func hasPrefix(parts [5]string, p string) bool {
	for _, s := range parts {
		if len(p) <= len(s) {
			return strings.HasPrefix(s, p)
		}
		if p[:len(s)] != s {
			return false
		}
		p = p[len(s):]
	}
	return p == ""
}

func equals(parts [5]string, p string) bool {
	n := 0
	for _, s := range parts {
		n += len(s)
	}
	return n == len(p) && hasPrefix(parts, p)
}

func hasSuffix(parts [5]string, p string) bool {
	for i := len(parts) - 1; i >= 0; i-- {
		s := parts[i]
		if len(p) <= len(s) {
			return strings.HasSuffix(s, p)
		}
		if p[len(p)-len(s):] != s {
			return false
		}
		p = p[:len(p)-len(s)]
	}
	return p == ""
}

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid authorization")

// Validate checks that every field Evaluate relies on is well formed, so a
// policy that would be mis-evaluated is rejected at xDS time instead.
func Validate(p *security.Authorization) error {
	if _, ok := security.Action_name[int32(p.GetAction())]; !ok {
		return fmt.Errorf("field action: unknown value %d: %w", p.GetAction(), ErrInvalid)
	}
	if _, ok := security.Scope_name[int32(p.GetScope())]; !ok {
		return fmt.Errorf("field scope: unknown value %d: %w", p.GetScope(), ErrInvalid)
	}
	for gi, g := range p.GetGroups() {
		for ri, r := range g.GetRules() {
			for mi, m := range r.GetMatches() {
				at := fmt.Sprintf("groups[%d].rules[%d].matches[%d]", gi, ri, mi)
				if err := validateMatch(m); err != nil {
					return fmt.Errorf("field %s.%w", at, err)
				}
			}
		}
	}
	return nil
}

func validateMatch(m *security.Match) error {
	addrs := map[string][]*security.Address{
		"source_ips": m.GetSourceIps(), "not_source_ips": m.GetNotSourceIps(),
		"destination_ips": m.GetDestinationIps(), "not_destination_ips": m.GetNotDestinationIps(),
	}
	for field, l := range addrs {
		for i, a := range l {
			n := len(a.GetAddress())
			if n != 4 && n != 16 {
				return fmt.Errorf("%s[%d].address: want 4 or 16 bytes, got %d: %w", field, i, n, ErrInvalid)
			}
			if int(a.GetLength()) > n*8 {
				return fmt.Errorf("%s[%d].length: %d exceeds %d bits: %w", field, i, a.GetLength(), n*8, ErrInvalid)
			}
		}
	}
	ports := map[string][]uint32{"destination_ports": m.GetDestinationPorts(), "not_destination_ports": m.GetNotDestinationPorts()}
	for field, l := range ports {
		for i, p := range l {
			if p == 0 || p > 65535 {
				return fmt.Errorf("%s[%d]: port %d out of range 1-65535: %w", field, i, p, ErrInvalid)
			}
		}
	}
	strs := map[string][]*security.StringMatch{
		"namespaces": m.GetNamespaces(), "not_namespaces": m.GetNotNamespaces(),
		"principals": m.GetPrincipals(), "not_principals": m.GetNotPrincipals(),
	}
	for field, l := range strs {
		for i, s := range l {
			if s.GetMatchType() == nil {
				return fmt.Errorf("%s[%d]: no match type (exact, prefix, suffix or presence): %w", field, i, ErrInvalid)
			}
		}
	}
	return nil
}
