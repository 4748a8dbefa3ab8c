package waypointxds

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// authzScope is the set of RBAC policies enforced for one target (the
// waypoint as a whole, or one Service merged with the waypoint's).
type authzScope struct {
	deny  map[string]*rbacv3.Policy
	allow map[string]*rbacv3.Policy
	// allowPresent is true when an ALLOW policy targets the scope, even one
	// whose every rule was dropped: ALLOW is then enforced (deny by default).
	allowPresent bool
}

func (s *authzScope) merge(o *authzScope) *authzScope {
	m := &authzScope{deny: map[string]*rbacv3.Policy{}, allow: map[string]*rbacv3.Policy{}}
	for _, x := range []*authzScope{s, o} {
		if x == nil {
			continue
		}
		maps.Copy(m.deny, x.deny)
		maps.Copy(m.allow, x.allow)
		m.allowPresent = m.allowPresent || x.allowPresent
	}
	return m
}

// rbac renders the DENY (deny=true) or ALLOW filter config. An absent rules
// field means the filter does nothing.
func (s *authzScope) rbac(deny bool) *rbacfilterv3.RBAC {
	if s == nil {
		return &rbacfilterv3.RBAC{}
	}
	if deny {
		if len(s.deny) == 0 {
			return &rbacfilterv3.RBAC{}
		}
		return &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: s.deny}}
	}
	if !s.allowPresent {
		return &rbacfilterv3.RBAC{}
	}
	return &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: s.allow}}
}

func newScope() *authzScope {
	return &authzScope{deny: map[string]*rbacv3.Policy{}, allow: map[string]*rbacv3.Policy{}}
}

// authorization sorts the policies targeting this waypoint or its bound
// services into scopes, and records a WaypointAccepted condition for each.
func (b *builder) authorization() (*authzScope, map[Key]*authzScope) {
	gw := newScope()
	perSvc := map[Key]*authzScope{}
	pols := append([]AuthorizationPolicy(nil), b.in.AuthorizationPolicies...)
	sort.Slice(pols, func(i, j int) bool {
		return pols[i].Namespace+"/"+pols[i].Name < pols[j].Namespace+"/"+pols[j].Name
	})
	for _, p := range pols {
		if p.Spec == nil {
			continue
		}
		var scopes []*authzScope
		refs := p.Spec.GetTargetRefs()
		if p.Spec.GetTargetRef() != nil {
			refs = append(refs, p.Spec.GetTargetRef())
		}
		for _, t := range refs {
			if t.Namespace != "" && t.Namespace != p.Namespace {
				continue
			}
			switch {
			case t.Kind == "Gateway" && t.Group == gatewayv1.GroupName && t.Name == b.in.Waypoint.Name && p.Namespace == b.in.Waypoint.Namespace:
				scopes = append(scopes, gw)
			case t.Kind == "Service" && (t.Group == "" || t.Group == "core"):
				k := Key{Namespace: p.Namespace, Name: t.Name}
				if _, ok := b.bound[k]; !ok {
					continue
				}
				if perSvc[k] == nil {
					perSvc[k] = newScope()
				}
				scopes = append(scopes, perSvc[k])
			}
		}
		if len(scopes) == 0 {
			continue
		}
		policies, deny, problems := b.translatePolicy(p)
		for _, s := range scopes {
			switch {
			case deny:
				maps.Copy(s.deny, policies)
			case p.Spec.Action == securityv1beta1.AuthorizationPolicy_ALLOW:
				maps.Copy(s.allow, policies)
				s.allowPresent = true
			}
		}
		wp := b.in.Waypoint.Namespace + "/" + b.in.Waypoint.Name
		if len(problems) > 0 {
			b.conds = append(b.conds, cond(KindAuthorizationPolicy, p.Namespace, p.Name, nil, p.Generation, ConditionWaypointAccepted, false,
				ReasonUnsupportedValue, fmt.Sprintf("waypoint %s: %s", wp, strings.Join(problems, "; "))))
		} else {
			b.conds = append(b.conds, cond(KindAuthorizationPolicy, p.Namespace, p.Name, nil, p.Generation, ConditionWaypointAccepted, true,
				ReasonAccepted, "bound to waypoint "+wp))
		}
	}
	if len(gw.deny) == 0 && len(gw.allow) == 0 && !gw.allowPresent {
		gw = nil
	}
	return gw, perSvc
}

// PolicyName is the RBAC policy name of one rule, as Istio writes it.
func PolicyName(ns, name string, rule int) string {
	return "ns[" + ns + "]-policy[" + name + "]-rule[" + strconv.Itoa(rule) + "]"
}

// translatePolicy returns the RBAC policies of one AuthorizationPolicy,
// whether they belong in the DENY filter, and what was not supported.
//
// Fail closed: an ALLOW rule with an unsupported field is dropped (it allows
// nothing, so an ALLOW policy whose every rule is dropped denies everything
// not allowed by another ALLOW policy); in a DENY rule the unsupported field
// is ignored (the rule denies more); CUSTOM denies all requests; AUDIT is
// ignored.
func (b *builder) translatePolicy(p AuthorizationPolicy) (map[string]*rbacv3.Policy, bool, []string) {
	out := map[string]*rbacv3.Policy{}
	switch p.Spec.Action {
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		out["ns["+p.Namespace+"]-policy["+p.Name+"]-custom-unsupported"] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPerm()}, Principals: []*rbacv3.Principal{anyID()},
		}
		return out, true, []string{"action CUSTOM (external authorization) is not supported: all requests are denied"}
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		return nil, false, []string{"action AUDIT is not supported: policy ignored"}
	}
	deny := p.Spec.Action == securityv1beta1.AuthorizationPolicy_DENY
	var problems []string
	for i, r := range p.Spec.Rules {
		t := &ruleTranslator{deny: deny, ns: p.Namespace, td: b.td, idx: i}
		pol := t.rule(r)
		problems = append(problems, t.problems...)
		if t.drop {
			continue
		}
		out[PolicyName(p.Namespace, p.Name, i)] = pol
	}
	return out, deny, problems
}

type ruleTranslator struct {
	deny     bool
	ns, td   string
	idx      int
	problems []string
	drop     bool
}

func (t *ruleTranslator) unsupported(field string) {
	what := "rule dropped (fail closed)"
	if t.deny {
		what = "field ignored (fail closed: the DENY rule matches more)"
	}
	t.problems = append(t.problems, fmt.Sprintf("rules[%d]: %s not supported: %s", t.idx, field, what))
	if !t.deny {
		t.drop = true
	}
}

func (t *ruleTranslator) rule(r *securityv1beta1.Rule) *rbacv3.Policy {
	var perms []*rbacv3.Permission
	var ids []*rbacv3.Principal
	if len(r.GetTo()) > 0 {
		var ors []*rbacv3.Permission
		for i, to := range r.To {
			ors = append(ors, t.operation(i, to.GetOperation()))
		}
		perms = append(perms, orPerm(ors))
	}
	if len(r.GetFrom()) > 0 {
		var ors []*rbacv3.Principal
		for i, from := range r.From {
			ors = append(ors, t.source(i, from.GetSource()))
		}
		ids = append(ids, orID(ors))
	}
	for i, c := range r.GetWhen() {
		perm, id := t.condition(i, c)
		if perm != nil {
			perms = append(perms, perm)
		}
		if id != nil {
			ids = append(ids, id)
		}
	}
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{andPerm(perms)}, Principals: []*rbacv3.Principal{andID(ids)}}
}

// field builds "values OR'd, AND NOT notValues OR'd" for one attribute.
func permField(vals, notVals []string, f func(string) *rbacv3.Permission) *rbacv3.Permission {
	var and []*rbacv3.Permission
	if len(vals) > 0 {
		var ors []*rbacv3.Permission
		for _, v := range vals {
			ors = append(ors, f(v))
		}
		and = append(and, orPerm(ors))
	}
	if len(notVals) > 0 {
		var ors []*rbacv3.Permission
		for _, v := range notVals {
			ors = append(ors, f(v))
		}
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: orPerm(ors)}})
	}
	if len(and) == 0 {
		return nil
	}
	return andPerm(and)
}

func idField(vals, notVals []string, f func(string) *rbacv3.Principal) *rbacv3.Principal {
	var and []*rbacv3.Principal
	if len(vals) > 0 {
		var ors []*rbacv3.Principal
		for _, v := range vals {
			ors = append(ors, f(v))
		}
		and = append(and, orID(ors))
	}
	if len(notVals) > 0 {
		var ors []*rbacv3.Principal
		for _, v := range notVals {
			ors = append(ors, f(v))
		}
		and = append(and, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: orID(ors)}})
	}
	if len(and) == 0 {
		return nil
	}
	return andID(and)
}

func (t *ruleTranslator) operation(i int, op *securityv1beta1.Operation) *rbacv3.Permission {
	if op == nil {
		return anyPerm()
	}
	var and []*rbacv3.Permission
	add := func(p *rbacv3.Permission) {
		if p != nil {
			and = append(and, p)
		}
	}
	add(permField(op.Hosts, op.NotHosts, hostPerm))
	add(permField(op.Ports, op.NotPorts, func(v string) *rbacv3.Permission { return t.portPerm(fmt.Sprintf("to[%d].operation.ports", i), v) }))
	add(permField(op.Methods, op.NotMethods, func(v string) *rbacv3.Permission {
		return headerPerm(":method", exactMatcher(v))
	}))
	add(permField(op.Paths, op.NotPaths, func(v string) *rbacv3.Permission { return t.pathPerm(i, v) }))
	return andPerm(and)
}

func (t *ruleTranslator) portPerm(field, v string) *rbacv3.Permission {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		t.unsupported(fmt.Sprintf("%s value %q (not a port number)", field, v))
		return anyPerm()
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}
}

func (t *ruleTranslator) pathPerm(i int, v string) *rbacv3.Permission {
	var sm *matcherv3.StringMatcher
	switch {
	case strings.Contains(v, "{"):
		t.unsupported(fmt.Sprintf("to[%d].operation.paths template %q", i, v))
		return anyPerm()
	case v == "*":
		return anyPerm()
	case strings.HasSuffix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(v, "*")}}
	case strings.HasPrefix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(v, "*")}}
	default:
		sm = exactMatcher(v)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: sm}}}}
}

// hostPerm matches :authority case-insensitively, with or without a port.
func hostPerm(v string) *rbacv3.Permission {
	var re string
	switch {
	case v == "*":
		return anyPerm()
	case strings.HasPrefix(v, "*"):
		re = ".*" + regexp.QuoteMeta(v[1:])
	case strings.HasSuffix(v, "*"):
		re = regexp.QuoteMeta(v[:len(v)-1]) + ".*"
	default:
		re = regexp.QuoteMeta(v)
	}
	return headerPerm(":authority", regexMatcher("(?i)"+re+"(:[0-9]+)?"))
}

func (t *ruleTranslator) source(i int, s *securityv1beta1.Source) *rbacv3.Principal {
	if s == nil {
		return anyID()
	}
	field := func(name string, set bool) {
		if set {
			t.unsupported(fmt.Sprintf("from[%d].source.%s", i, name))
		}
	}
	field("requestPrincipals", len(s.RequestPrincipals) > 0)
	field("notRequestPrincipals", len(s.NotRequestPrincipals) > 0)
	field("ipBlocks", len(s.IpBlocks) > 0)
	field("notIpBlocks", len(s.NotIpBlocks) > 0)
	field("remoteIpBlocks", len(s.RemoteIpBlocks) > 0)
	field("notRemoteIpBlocks", len(s.NotRemoteIpBlocks) > 0)
	var and []*rbacv3.Principal
	add := func(p *rbacv3.Principal) {
		if p != nil {
			and = append(and, p)
		}
	}
	add(idField(s.Principals, s.NotPrincipals, principalID))
	add(idField(s.Namespaces, s.NotNamespaces, namespaceID))
	add(idField(s.ServiceAccounts, s.NotServiceAccounts, t.serviceAccountID))
	add(idField(s.TrustDomains, s.NotTrustDomains, trustDomainID))
	return andID(and)
}

func (t *ruleTranslator) condition(i int, c *securityv1beta1.Condition) (*rbacv3.Permission, *rbacv3.Principal) {
	key := c.GetKey()
	if h, ok := strings.CutPrefix(key, "request.headers["); ok && strings.HasSuffix(h, "]") {
		name := strings.ToLower(strings.TrimSuffix(h, "]"))
		return permField(c.Values, c.NotValues, func(v string) *rbacv3.Permission { return headerPerm(name, wildcardMatcher(v)) }), nil
	}
	switch key {
	case "source.namespace":
		return nil, idField(c.Values, c.NotValues, namespaceID)
	case "source.principal":
		return nil, idField(c.Values, c.NotValues, principalID)
	case "destination.port":
		return permField(c.Values, c.NotValues, func(v string) *rbacv3.Permission { return t.portPerm(fmt.Sprintf("when[%d] destination.port", i), v) }), nil
	}
	t.unsupported(fmt.Sprintf("when[%d].key %q", i, key))
	return nil, nil
}

// principalID follows Istio: "cluster.local/ns/x/sa/y" means the peer's
// SPIFFE URI; a leading or trailing * makes a suffix or prefix match.
func principalID(v string) *rbacv3.Principal {
	var sm *matcherv3.StringMatcher
	withScheme := func(s string) string {
		if strings.HasPrefix(s, "spiffe://") {
			return s
		}
		return "spiffe://" + s
	}
	switch {
	case v == "*":
		sm = regexMatcher(".+")
	case strings.HasPrefix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
	case strings.HasSuffix(v, "*"):
		sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: withScheme(v[:len(v)-1])}}
	default:
		sm = exactMatcher(withScheme(v))
	}
	return authenticated(sm)
}

func namespaceID(v string) *rbacv3.Principal {
	var ns string
	switch {
	case v == "*":
		ns = "[^/]+"
	case strings.HasPrefix(v, "*"):
		ns = "[^/]*" + regexp.QuoteMeta(v[1:])
	case strings.HasSuffix(v, "*"):
		ns = regexp.QuoteMeta(v[:len(v)-1]) + "[^/]*"
	default:
		ns = regexp.QuoteMeta(v)
	}
	return authenticated(regexMatcher(".*/ns/" + ns + "/.*"))
}

func (t *ruleTranslator) serviceAccountID(v string) *rbacv3.Principal {
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		ns, sa = t.ns, v
	}
	return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/ns/" + ns + "/sa/" + sa}})
}

func trustDomainID(v string) *rbacv3.Principal {
	if v == "*" {
		return authenticated(regexMatcher(".+"))
	}
	return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + v + "/"}})
}

func authenticated(sm *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: sm}}}
}

func wildcardMatcher(v string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return regexMatcher(".*")
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}}
	}
	return exactMatcher(v)
}

func exactMatcher(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func headerPerm(name string, sm *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
	}}}
}

func anyPerm() *rbacv3.Permission { return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}} }
func anyID() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

// andPerm and friends collapse trivial sets: none → any, one → itself.
func andPerm(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return anyPerm()
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func orPerm(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func andID(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return anyID()
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orID(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}
