package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"istio.io/istio/pkg/workloadapi/security"
)

// l4WhenKeys are the `when` condition keys ztunnel can evaluate.
var l4WhenKeys = map[string]bool{
	"source.ip":        true,
	"source.namespace": true,
	"source.principal": true,
	"destination.ip":   true,
	"destination.port": true,
}

const (
	unsupportedFmt = "ztunnel does not support HTTP attributes (found: %s). " +
		"In ambient mode you must use a waypoint proxy to enforce HTTP rules. %s"
	allowBoilerplate = "Within an ALLOW policy, rules matching HTTP attributes are omitted. " +
		"This will be more restrictive than requested."
	denyBoilerplate = "DENY policy with HTTP attributes is enforced without the HTTP rules. " +
		"This will be more restrictive than requested."
	invalidAllowFmt = "invalid values (%s): within an ALLOW policy the rules holding them are omitted. " +
		"This will be more restrictive than requested."
	invalidDenyFmt = "invalid values (%s): within a DENY policy the fields holding them are ignored. " +
		"This will be more restrictive than requested."
)

// PolicyResult is the outcome of translating one AuthorizationPolicy.
type PolicyResult struct {
	// Authorization is nil when nothing is sent to ztunnel.
	Authorization *security.Authorization
	// Selector is the workload selector for WORKLOAD_SELECTOR scope.
	Selector map[string]string
	// Condition is the ZtunnelAccepted condition; nil for waypoint policies.
	Condition *Condition
	// Diagnostic is set for policies that only a waypoint enforces.
	Diagnostic *Diagnostic
}

// ConvertAuthorizationPolicy translates an AuthorizationPolicy for ztunnel,
// following Istio's rules (see the package comment). Values that do not
// parse (a bad CIDR or port) are handled fail-closed like HTTP attributes:
// an ALLOW rule holding one is omitted, a DENY rule holding one is enforced
// without that field; the condition names the offending field.
func ConvertAuthorizationPolicy(p AuthorizationPolicy, rootNamespace string) PolicyResult {
	ref := ObjectRef{Kind: "AuthorizationPolicy", Namespace: p.Namespace, Name: p.Name}
	spec := p.Spec
	if spec == nil {
		spec = &securityv1beta1.AuthorizationPolicy{}
	}
	if spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0 {
		return PolicyResult{Diagnostic: &Diagnostic{Object: ref, Reason: ReasonForWaypoint,
			Message: "policy has targetRefs: enforced by a waypoint, not sent to ztunnel"}}
	}
	cond := func(status bool, reason, msg string) *Condition {
		return &Condition{Object: ref, Type: ConditionZtunnelAccepted, Status: status, Reason: reason, Message: msg}
	}
	var action security.Action
	switch spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_ALLOW:
		action = security.Action_ALLOW
	case securityv1beta1.AuthorizationPolicy_DENY:
		action = security.Action_DENY
	default:
		return PolicyResult{Condition: cond(false, ReasonUnsupportedValue,
			fmt.Sprintf("ztunnel does not support the %s action", spec.GetAction()))}
	}
	scope := security.Scope_WORKLOAD_SELECTOR
	var selector map[string]string
	if spec.GetSelector() == nil {
		scope = security.Scope_NAMESPACE
		if p.Namespace == rootNamespace {
			scope = security.Scope_GLOBAL
		}
	} else {
		selector = spec.GetSelector().GetMatchLabels()
	}
	out := &security.Authorization{
		Name:      p.Name,
		Namespace: p.Namespace,
		Scope:     scope,
		Action:    action,
		DryRun:    p.DryRun,
	}
	unsupported := map[string]bool{}
	var invalid []string
	for i, rule := range spec.GetRules() {
		rules, l7, bad := convertRule(action, rule, p.Namespace, fmt.Sprintf("rules[%d]", i))
		for _, k := range l7 {
			unsupported[k] = true
		}
		invalid = append(invalid, bad...)
		if rules != nil {
			out.Groups = append(out.Groups, &security.Group{Rules: rules})
		}
	}
	res := PolicyResult{Authorization: out, Selector: selector}
	switch {
	case len(invalid) > 0:
		f := invalidAllowFmt
		if action == security.Action_DENY {
			f = invalidDenyFmt
		}
		res.Condition = cond(false, ReasonInvalidValue, fmt.Sprintf(f, strings.Join(invalid, "; ")))
	case len(unsupported) > 0:
		b := allowBoilerplate
		if action == security.Action_DENY {
			b = denyBoilerplate
		}
		res.Condition = cond(false, ReasonUnsupportedValue, fmt.Sprintf(unsupportedFmt, strings.Join(sortedKeys(unsupported), ", "), b))
	default:
		res.Condition = cond(true, ReasonAccepted, "attached to ztunnel")
	}
	return res
}

// convertRule translates one rule into the Rules of a Group (AND-ed): the
// `to` operations (OR-ed) first, then the `from` sources (OR-ed), then one
// Rules per `when` condition. It returns nil rules when an ALLOW rule must
// be dropped, the HTTP-only attributes found and the invalid values found.
func convertRule(action security.Action, rule *securityv1beta1.Rule, ns, path string) ([]*security.Rules, []string, []string) {
	var l7, invalid []string
	allow := action == security.Action_ALLOW
	rules := []*security.Rules{}

	var toMatches []*security.Match
	for i, to := range rule.GetTo() {
		op := to.GetOperation()
		l7 = append(l7, nonEmpty(map[string][]string{
			"hosts": op.GetHosts(), "notHosts": op.GetNotHosts(),
			"methods": op.GetMethods(), "notMethods": op.GetNotMethods(),
			"paths": op.GetPaths(), "notPaths": op.GetNotPaths(),
		})...)
		p := fmt.Sprintf("%s.to[%d].operation", path, i)
		m := &security.Match{}
		m.DestinationPorts, invalid = parsePorts(op.GetPorts(), p+".ports", invalid)
		m.NotDestinationPorts, invalid = parsePorts(op.GetNotPorts(), p+".notPorts", invalid)
		toMatches = append(toMatches, m)
	}
	if len(toMatches) > 0 {
		rules = append(rules, &security.Rules{Matches: toMatches})
	}

	var fromMatches []*security.Match
	for i, from := range rule.GetFrom() {
		src := from.GetSource()
		l7 = append(l7, nonEmpty(map[string][]string{
			"remoteIpBlocks": src.GetRemoteIpBlocks(), "notRemoteIpBlocks": src.GetNotRemoteIpBlocks(),
			"requestPrincipals": src.GetRequestPrincipals(), "notRequestPrincipals": src.GetNotRequestPrincipals(),
			"trustDomains": src.GetTrustDomains(), "notTrustDomains": src.GetNotTrustDomains(),
		})...)
		p := fmt.Sprintf("%s.from[%d].source", path, i)
		m := &security.Match{
			Namespaces:         stringMatches(src.GetNamespaces()),
			NotNamespaces:      stringMatches(src.GetNotNamespaces()),
			ServiceAccounts:    serviceAccountMatches(src.GetServiceAccounts(), ns),
			NotServiceAccounts: serviceAccountMatches(src.GetNotServiceAccounts(), ns),
			Principals:         stringMatches(src.GetPrincipals()),
			NotPrincipals:      stringMatches(src.GetNotPrincipals()),
		}
		m.SourceIps, invalid = parseCIDRs(src.GetIpBlocks(), p+".ipBlocks", invalid)
		m.NotSourceIps, invalid = parseCIDRs(src.GetNotIpBlocks(), p+".notIpBlocks", invalid)
		fromMatches = append(fromMatches, m)
	}
	if len(fromMatches) > 0 {
		rules = append(rules, &security.Rules{Matches: fromMatches})
	}

	for i, when := range rule.GetWhen() {
		key := when.GetKey()
		if !l4WhenKeys[key] {
			l7 = append(l7, key)
		}
		p := fmt.Sprintf("%s.when[%d]", path, i)
		m := &security.Match{}
		switch key {
		case "source.namespace":
			m.Namespaces, m.NotNamespaces = stringMatches(when.GetValues()), stringMatches(when.GetNotValues())
		case "source.principal":
			m.Principals, m.NotPrincipals = stringMatches(when.GetValues()), stringMatches(when.GetNotValues())
		case "source.ip":
			m.SourceIps, invalid = parseCIDRs(when.GetValues(), p+".values", invalid)
			m.NotSourceIps, invalid = parseCIDRs(when.GetNotValues(), p+".notValues", invalid)
		case "destination.ip":
			m.DestinationIps, invalid = parseCIDRs(when.GetValues(), p+".values", invalid)
			m.NotDestinationIps, invalid = parseCIDRs(when.GetNotValues(), p+".notValues", invalid)
		case "destination.port":
			m.DestinationPorts, invalid = parsePorts(when.GetValues(), p+".values", invalid)
			m.NotDestinationPorts, invalid = parsePorts(when.GetNotValues(), p+".notValues", invalid)
		}
		rules = append(rules, &security.Rules{Matches: []*security.Match{m}})
	}
	if allow && (len(l7) > 0 || len(invalid) > 0) {
		// An ALLOW rule ztunnel cannot evaluate fully never matches.
		rules = nil
	}
	return rules, l7, invalid
}

func nonEmpty(fields map[string][]string) []string {
	var out []string
	for k, v := range fields {
		if len(v) > 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// stringMatches converts Istio string patterns: "*" presence, "*x" suffix,
// "x*" prefix, otherwise exact.
func stringMatches(vals []string) []*security.StringMatch {
	if len(vals) == 0 {
		return nil
	}
	out := make([]*security.StringMatch, 0, len(vals))
	for _, v := range vals {
		var sm *security.StringMatch
		switch {
		case v == "*":
			sm = &security.StringMatch{MatchType: &security.StringMatch_Presence{}}
		case strings.HasPrefix(v, "*"):
			sm = &security.StringMatch{MatchType: &security.StringMatch_Suffix{Suffix: strings.TrimPrefix(v, "*")}}
		case strings.HasSuffix(v, "*"):
			sm = &security.StringMatch{MatchType: &security.StringMatch_Prefix{Prefix: strings.TrimSuffix(v, "*")}}
		default:
			sm = &security.StringMatch{MatchType: &security.StringMatch_Exact{Exact: v}}
		}
		out = append(out, sm)
	}
	return out
}

// serviceAccountMatches converts "ns/sa" or "sa" (in the policy namespace).
func serviceAccountMatches(vals []string, ns string) []*security.ServiceAccountMatch {
	if len(vals) == 0 {
		return nil
	}
	out := make([]*security.ServiceAccountMatch, 0, len(vals))
	for _, v := range vals {
		if n, sa, ok := strings.Cut(v, "/"); ok {
			out = append(out, &security.ServiceAccountMatch{Namespace: n, ServiceAccount: sa})
		} else {
			out = append(out, &security.ServiceAccountMatch{Namespace: ns, ServiceAccount: v})
		}
	}
	return out
}

// parseCIDRs parses IPs and CIDRs. If any value is invalid, it returns nil
// for the whole field (the caller drops an ALLOW rule; a DENY rule then
// ignores the field, which only widens what it denies) and appends a
// description naming the field to invalid.
func parseCIDRs(vals []string, field string, invalid []string) ([]*security.Address, []string) {
	if len(vals) == 0 {
		return nil, invalid
	}
	out := make([]*security.Address, 0, len(vals))
	for i, v := range vals {
		pfx, err := parseCIDR(v)
		if err != nil {
			return nil, append(invalid, fmt.Sprintf("%s[%d]: %q is not an IP address or CIDR", field, i, v))
		}
		out = append(out, &security.Address{Address: pfx.Addr().AsSlice(), Length: uint32(pfx.Bits())})
	}
	return out, invalid
}

func parseCIDR(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse CIDR %q: %w", v, err)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse IP %q: %w", v, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parsePorts parses port numbers; like parseCIDRs on an invalid value.
func parsePorts(vals []string, field string, invalid []string) ([]uint32, []string) {
	if len(vals) == 0 {
		return nil, invalid
	}
	out := make([]uint32, 0, len(vals))
	for i, v := range vals {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return nil, append(invalid, fmt.Sprintf("%s[%d]: %q is not a port number", field, i, v))
		}
		out = append(out, uint32(n))
	}
	return out, invalid
}
