package waypointxds

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// candidate is one Envoy route (a route rule × one of its matches) with the
// keys Gateway API precedence sorts on.
type candidate struct {
	route     *routev3.Route
	pathRank  int // 0 exact, 1 prefix, 2 regex (Istio: Exact > Prefix > Regex)
	pathLen   int
	method    bool
	headers   int
	queries   int
	created   time.Time
	key       string // namespace/name
	rule, idx int
}

func sortCandidates(cs []candidate) []candidate {
	out := append([]candidate(nil), cs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.pathRank != b.pathRank:
			return a.pathRank < b.pathRank
		case a.pathLen != b.pathLen:
			return a.pathLen > b.pathLen
		case a.method != b.method:
			return a.method
		case a.headers != b.headers:
			return a.headers > b.headers
		case a.queries != b.queries:
			return a.queries > b.queries
		case !a.created.Equal(b.created):
			return a.created.Before(b.created)
		case a.key != b.key:
			return a.key < b.key
		case a.rule != b.rule:
			return a.rule < b.rule
		}
		return a.idx < b.idx
	})
	return out
}

// routeMeta is what attachment needs to know about an HTTPRoute or GRPCRoute.
type routeMeta struct {
	kind      string
	namespace string
	name      string
	gen       int64
	created   metav1.Time
	hostnames []gatewayv1.Hostname
	parents   []gatewayv1.ParentReference
}

// parentString renders a parentRef for sorting and messages.
func parentString(p gatewayv1.ParentReference, routeNS string) string {
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	s := parentKind(p) + "/" + ns + "/" + string(p.Name)
	if p.SectionName != nil {
		s += "/" + string(*p.SectionName)
	}
	if p.Port != nil {
		s += ":" + strconv.Itoa(int(*p.Port))
	}
	return s
}

func parentKind(p gatewayv1.ParentReference) string {
	if p.Kind == nil {
		return "Gateway"
	}
	return string(*p.Kind)
}

func parentGroup(p gatewayv1.ParentReference) string {
	if p.Group == nil {
		return gatewayv1.GroupName
	}
	return string(*p.Group)
}

// attachment is where one parentRef attaches a route in this waypoint.
type attachment struct {
	parent  *gatewayv1.ParentReference
	vhosts  []vhostKey
	gateway bool
}

// attach resolves a route's parentRefs. Parents this waypoint is not
// responsible for (another waypoint's Service or Gateway) yield nothing;
// problems yield an Accepted=False condition.
func (b *builder) attach(m routeMeta) []attachment {
	var out []attachment
	for i := range m.parents {
		p := &m.parents[i]
		ns := m.namespace
		if p.Namespace != nil {
			ns = string(*p.Namespace)
		}
		reject := func(reason gatewayv1.RouteConditionReason, msg string) {
			b.conds = append(b.conds, cond(m.kind, m.namespace, m.name, p, m.gen, string(gatewayv1.RouteConditionAccepted), false, string(reason), msg))
		}
		switch {
		case parentKind(*p) == "Service" && (parentGroup(*p) == "" || parentGroup(*p) == "core"):
			key := Key{Namespace: ns, Name: string(p.Name)}
			s, bound := b.bound[key]
			if !bound {
				if _, exists := b.lookup(key); !exists {
					reject(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("parent Service %s not found", key))
				}
				continue // another waypoint's (or no waypoint's) service
			}
			if ns != m.namespace {
				reject(gatewayv1.RouteReasonNotAllowedByListeners, fmt.Sprintf("route in namespace %s attaches to Service %s: consumer routes are not supported by waypoints; create the route in namespace %s", m.namespace, key, ns))
				continue
			}
			var vks []vhostKey
			for _, sp := range s.Ports {
				if isHTTPPort(sp) && (p.Port == nil || uint32(*p.Port) == sp.Port) {
					vks = append(vks, vhostKey{key, sp.Port})
				}
			}
			if len(vks) == 0 {
				reject(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("Service %s has no HTTP port %s", key, portString(p.Port)))
				continue
			}
			out = append(out, attachment{parent: p, vhosts: vks})
		case parentKind(*p) == "Gateway" && parentGroup(*p) == gatewayv1.GroupName:
			if ns != b.in.Waypoint.Namespace || string(p.Name) != b.in.Waypoint.Name {
				continue
			}
			if p.SectionName != nil && *p.SectionName != "mesh" || p.Port != nil && *p.Port != HBONEPort {
				reject(gatewayv1.RouteReasonNoMatchingParent, fmt.Sprintf("waypoint %s/%s has only the listener mesh on port %d", ns, p.Name, HBONEPort))
				continue
			}
			if m.namespace != ns {
				reject(gatewayv1.RouteReasonNotAllowedByListeners, fmt.Sprintf("waypoint %s/%s allows routes from its own namespace only", ns, p.Name))
				continue
			}
			var vks []vhostKey
			for _, s := range b.in.Bound {
				if !hostnameMatches(m.hostnames, s.Hostname) {
					continue
				}
				for _, sp := range s.Ports {
					if isHTTPPort(sp) {
						vks = append(vks, vhostKey{s.Key(), sp.Port})
					}
				}
			}
			out = append(out, attachment{parent: p, vhosts: vks, gateway: true})
		}
	}
	return out
}

func portString(p *gatewayv1.PortNumber) string {
	if p == nil {
		return "(any)"
	}
	return strconv.Itoa(int(*p))
}

func hostnameMatches(hs []gatewayv1.Hostname, host string) bool {
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		if suf, ok := strings.CutPrefix(string(h), "*"); ok && strings.HasSuffix(host, suf) || string(h) == host {
			return true
		}
	}
	return false
}

// refProblems collects ResolvedRefs failures of one route, and the clusters
// its backends need (sent only if the route is accepted).
type refProblems struct {
	reason   gatewayv1.RouteConditionReason
	msgs     []string
	clusters []clusterRef
}

func (r *refProblems) add(reason gatewayv1.RouteConditionReason, msg string) {
	if r.reason == "" {
		r.reason = reason
	}
	r.msgs = append(r.msgs, msg)
}

// finish writes Accepted and ResolvedRefs for every attachment.
func (b *builder) finish(m routeMeta, atts []attachment, unsupported []string, refs *refProblems) bool {
	for _, a := range atts {
		if len(unsupported) > 0 {
			b.conds = append(b.conds, cond(m.kind, m.namespace, m.name, a.parent, m.gen, string(gatewayv1.RouteConditionAccepted), false,
				string(gatewayv1.RouteReasonUnsupportedValue), "not supported by the waypoint: "+strings.Join(unsupported, "; ")))
		} else {
			b.conds = append(b.conds, cond(m.kind, m.namespace, m.name, a.parent, m.gen, string(gatewayv1.RouteConditionAccepted), true,
				string(gatewayv1.RouteReasonAccepted), "attached to waypoint "+b.in.Waypoint.Namespace+"/"+b.in.Waypoint.Name))
		}
		if refs.reason != "" {
			b.conds = append(b.conds, cond(m.kind, m.namespace, m.name, a.parent, m.gen, string(gatewayv1.RouteConditionResolvedRefs), false,
				string(refs.reason), strings.Join(refs.msgs, "; ")))
		} else {
			b.conds = append(b.conds, cond(m.kind, m.namespace, m.name, a.parent, m.gen, string(gatewayv1.RouteConditionResolvedRefs), true,
				string(gatewayv1.RouteReasonResolvedRefs), "all references resolved"))
		}
	}
	if len(unsupported) > 0 {
		return false
	}
	for _, c := range refs.clusters {
		b.clusters[c] = true
	}
	return true
}

func (b *builder) place(atts []attachment, c candidate, build func() *routev3.Route) {
	for _, a := range atts {
		for _, vk := range a.vhosts {
			cc := c
			cc.route = build()
			if a.gateway {
				b.gwRoutes[vk] = append(b.gwRoutes[vk], cc)
			} else {
				b.svcRoutes[vk] = append(b.svcRoutes[vk], cc)
			}
		}
	}
}

func (b *builder) attachHTTPRoutes() {
	for _, r := range b.in.HTTPRoutes {
		m := routeMeta{kind: KindHTTPRoute, namespace: r.Namespace, name: r.Name, gen: r.Generation, created: r.CreationTimestamp,
			hostnames: r.Spec.Hostnames, parents: r.Spec.ParentRefs}
		atts := b.attach(m)
		if len(atts) == 0 {
			continue
		}
		var unsupported []string
		refs := &refProblems{}
		fault, err := parseFault(r.Annotations[FaultAnnotation])
		if err != nil {
			unsupported = append(unsupported, err.Error())
		}
		type built struct {
			c     candidate
			route func() *routev3.Route
		}
		var routes []built
		for ri, rule := range r.Spec.Rules {
			tmpl, uns := b.httpRuleAction(r.Namespace, ri, rule, refs)
			unsupported = append(unsupported, uns...)
			if fault != nil {
				tmpl.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(fault)}
			}
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.HTTPRouteMatch{{}}
			}
			for mi, hm := range matches {
				match, c, err := httpMatch(hm)
				if err != nil {
					unsupported = append(unsupported, fmt.Sprintf("rules[%d].matches[%d]: %v", ri, mi, err))
					continue
				}
				c.created, c.key, c.rule, c.idx = r.CreationTimestamp.Time, r.Namespace+"/"+r.Name, ri, mi
				name := fmt.Sprintf("%s.%s.%d.%d", r.Namespace, r.Name, ri, mi)
				prefix := ""
				if p, ok := match.PathSpecifier.(*routev3.RouteMatch_PathSeparatedPrefix); ok {
					prefix = p.PathSeparatedPrefix
				}
				routes = append(routes, built{c, func() *routev3.Route {
					rt := cloneRoute(tmpl)
					rt.Name = name
					rt.Match = cloneMatch(match)
					fixRootPrefixRewrite(rt, prefix)
					return rt
				}})
			}
		}
		if !b.finish(m, atts, unsupported, refs) {
			continue
		}
		for _, bt := range routes {
			b.place(atts, bt.c, bt.route)
		}
	}
}

// httpMatch turns a Gateway API match into an Envoy RouteMatch.
func httpMatch(hm gatewayv1.HTTPRouteMatch) (*routev3.RouteMatch, candidate, error) {
	var c candidate
	m := &routev3.RouteMatch{}
	typ, val := gatewayv1.PathMatchPathPrefix, "/"
	if hm.Path != nil {
		if hm.Path.Type != nil {
			typ = *hm.Path.Type
		}
		if hm.Path.Value != nil {
			val = *hm.Path.Value
		}
	}
	switch typ {
	case gatewayv1.PathMatchExact:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: val}
		c.pathRank, c.pathLen = 0, len(val)
	case gatewayv1.PathMatchPathPrefix:
		p := strings.TrimRight(val, "/")
		if p == "" {
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: p}
		}
		c.pathRank, c.pathLen = 1, len(val)
	case gatewayv1.PathMatchRegularExpression:
		if _, err := regexp.Compile(val); err != nil {
			return nil, c, fmt.Errorf("path regex %q: %w", val, err)
		}
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: val}}
		c.pathRank, c.pathLen = 2, len(val)
	default:
		return nil, c, fmt.Errorf("path match type %q", typ)
	}
	for _, h := range hm.Headers {
		sm, err := stringMatch(h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression, h.Value)
		if err != nil {
			return nil, c, fmt.Errorf("header %s: %w", h.Name, err)
		}
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: strings.ToLower(string(h.Name)),
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	for _, q := range hm.QueryParams {
		sm, err := stringMatch(q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression, q.Value)
		if err != nil {
			return nil, c, fmt.Errorf("query param %s: %w", q.Name, err)
		}
		m.QueryParameters = append(m.QueryParameters, &routev3.QueryParameterMatcher{Name: string(q.Name),
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}})
	}
	if hm.Method != nil {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(string(*hm.Method))}})
		c.method = true
	}
	c.headers, c.queries = len(hm.Headers), len(hm.QueryParams)
	return m, c, nil
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func stringMatch(regex bool, v string) (*matcherv3.StringMatcher, error) {
	if !regex {
		return exact(v), nil
	}
	if _, err := regexp.Compile(v); err != nil {
		return nil, fmt.Errorf("regex %q: %w", v, err)
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}}, nil
}

// httpRuleAction builds the route (without match and name) for one rule.
func (b *builder) httpRuleAction(ns string, ri int, rule gatewayv1.HTTPRouteRule, refs *refProblems) (*routev3.Route, []string) {
	var unsupported []string
	rt := &routev3.Route{}
	var redirect *gatewayv1.HTTPRequestRedirectFilter
	var rewrite *gatewayv1.HTTPURLRewriteFilter
	for fi, f := range rule.Filters {
		switch {
		case f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
			rt.RequestHeadersToAdd, rt.RequestHeadersToRemove = headerMods(f.RequestHeaderModifier)
		case f.Type == gatewayv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
			rt.ResponseHeadersToAdd, rt.ResponseHeadersToRemove = headerMods(f.ResponseHeaderModifier)
		case f.Type == gatewayv1.HTTPRouteFilterRequestRedirect && f.RequestRedirect != nil:
			redirect = f.RequestRedirect
		case f.Type == gatewayv1.HTTPRouteFilterURLRewrite && f.URLRewrite != nil:
			rewrite = f.URLRewrite
		default:
			unsupported = append(unsupported, fmt.Sprintf("rules[%d].filters[%d]: filter type %s", ri, fi, f.Type))
		}
	}
	if redirect != nil {
		ra, err := redirectAction(redirect)
		if err != nil {
			unsupported = append(unsupported, fmt.Sprintf("rules[%d]: %v", ri, err))
		}
		rt.Action = &routev3.Route_Redirect{Redirect: ra}
		return rt, unsupported
	}
	var backends []weighted
	for bi, br := range rule.BackendRefs {
		if len(br.Filters) > 0 {
			unsupported = append(unsupported, fmt.Sprintf("rules[%d].backendRefs[%d].filters", ri, bi))
		}
		backends = append(backends, b.backend(ns, br.BackendRef, refs))
	}
	ra := routeAction(backends)
	if ra == nil {
		rt.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
		return rt, unsupported
	}
	if rewrite != nil {
		if rewrite.Hostname != nil {
			ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*rewrite.Hostname)}
		}
		if p := rewrite.Path; p != nil {
			switch {
			case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
				ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: *p.ReplaceFullPath}
			case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
				ra.PrefixRewrite = *p.ReplacePrefixMatch
			default:
				unsupported = append(unsupported, fmt.Sprintf("rules[%d]: URLRewrite path type %q", ri, p.Type))
			}
		}
	}
	ra.Timeout = durationpb.New(0) // Gateway API: no timeout unless set
	if t := rule.Timeouts; t != nil {
		if t.Request != nil {
			d, err := parseDuration(*t.Request)
			if err != nil {
				unsupported = append(unsupported, fmt.Sprintf("rules[%d].timeouts.request: %v", ri, err))
			}
			ra.Timeout = durationpb.New(d)
		}
		if t.BackendRequest != nil {
			d, err := parseDuration(*t.BackendRequest)
			if err != nil {
				unsupported = append(unsupported, fmt.Sprintf("rules[%d].timeouts.backendRequest: %v", ri, err))
			}
			ra.RetryPolicy = &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(0), PerTryTimeout: durationpb.New(d)}
		}
	}
	if r := rule.Retry; r != nil {
		rp := ra.RetryPolicy
		if rp == nil {
			rp = &routev3.RetryPolicy{}
		}
		rp.RetryOn = "connect-failure,refused-stream,unavailable,cancelled"
		if len(r.Codes) > 0 {
			rp.RetryOn += ",retriable-status-codes"
		}
		for _, c := range r.Codes {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(c))
		}
		rp.NumRetries = nil
		if r.Attempts != nil {
			rp.NumRetries = wrapperspb.UInt32(uint32(*r.Attempts))
		}
		if r.Backoff != nil {
			d, err := parseDuration(*r.Backoff)
			if err != nil {
				unsupported = append(unsupported, fmt.Sprintf("rules[%d].retry.backoff: %v", ri, err))
			}
			rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(d)}
		}
		ra.RetryPolicy = rp
	}
	if ra.RetryPolicy == nil {
		ra.RetryPolicy = defaultRetryPolicy()
	}
	rt.Action = &routev3.Route_Route{Route: ra}
	return rt, unsupported
}

// defaultRetryPolicy applies to a rule without retry (and without a
// backendRequest timeout, which sets its own policy): like Istio's default
// HTTP retry policy, a request is tried again, up to 2 more times, when it
// never reached a backend — the connection could not be opened or the
// stream was refused, as while a replica being deleted is still listed.
// Unlike Istio's, 503 answers are not retried by default: a backend's own
// 503 is passed on unless the route asks for retries.
func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:    "connect-failure,refused-stream,unavailable,cancelled",
		NumRetries: wrapperspb.UInt32(2),
	}
}

// fixRootPrefixRewrite handles ReplacePrefixMatch "/": Envoy's prefix_rewrite
// would turn /foo/bar into //bar, so the prefix is replaced with a regex
// (as Istio does).
func fixRootPrefixRewrite(rt *routev3.Route, prefix string) {
	if prefix == "" {
		return
	}
	re := &matcherv3.RegexMatchAndSubstitute{
		Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"},
		Substitution: "/",
	}
	if ra := rt.GetRoute(); ra != nil && ra.PrefixRewrite == "/" {
		ra.PrefixRewrite = ""
		ra.RegexRewrite = re
	}
	if rd := rt.GetRedirect(); rd != nil && rd.GetPrefixRewrite() == "/" {
		rd.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: re}
	}
}

// parseDuration reads a Gateway API Duration (e.g. 1h2m3s4ms; GEP-2257).
func parseDuration(d gatewayv1.Duration) (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", d, err)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", d)
	}
	return v, nil
}

func headerMods(f *gatewayv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string) {
	var add []*corev3.HeaderValueOption
	for _, h := range f.Set {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, h := range f.Add {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	var remove []string
	for _, r := range f.Remove {
		remove = append(remove, strings.ToLower(r))
	}
	return add, remove
}

func redirectAction(f *gatewayv1.HTTPRequestRedirectFilter) (*routev3.RedirectAction, error) {
	ra := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND}
	if f.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *f.Scheme}
	}
	if f.Hostname != nil {
		ra.HostRedirect = string(*f.Hostname)
	}
	if f.Port != nil {
		ra.PortRedirect = uint32(*f.Port)
	}
	if p := f.Path; p != nil {
		switch {
		case p.Type == gatewayv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *p.ReplaceFullPath}
		case p.Type == gatewayv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: *p.ReplacePrefixMatch}
		default:
			return ra, fmt.Errorf("redirect path type %q", p.Type)
		}
	}
	if f.StatusCode != nil {
		switch *f.StatusCode {
		case 301:
			ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
		case 302:
			ra.ResponseCode = routev3.RedirectAction_FOUND
		case 303:
			ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
		case 307:
			ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
		case 308:
			ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
		default:
			return ra, fmt.Errorf("redirect status code %d", *f.StatusCode)
		}
	}
	return ra, nil
}

// weighted is one resolved (or unresolved) backend share.
type weighted struct {
	cluster string
	weight  uint32
	valid   bool
}

// backend resolves a backendRef to a cluster, recording problems in refs.
// An unresolved reference keeps its weight and gets an InvalidBackendPrefix
// cluster name, so its share of requests fails with 500.
func (b *builder) backend(routeNS string, br gatewayv1.BackendRef, refs *refProblems) weighted {
	w := uint32(1)
	if br.Weight != nil {
		w = uint32(max(*br.Weight, 0))
	}
	ns := routeNS
	if br.Namespace != nil {
		ns = string(*br.Namespace)
	}
	key := Key{Namespace: ns, Name: string(br.Name)}
	invalid := weighted{cluster: InvalidBackendPrefix + key.String() + ":" + portString(br.Port), weight: w}
	kind, group := "Service", ""
	if br.Kind != nil {
		kind = string(*br.Kind)
	}
	if br.Group != nil {
		group = string(*br.Group)
	}
	switch {
	case kind != "Service" || (group != "" && group != "core"):
		refs.add(gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s: kind %s.%s is not supported (use a Service)", key, kind, group))
		return invalid
	case ns != routeNS:
		refs.add(gatewayv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef %s: cross-namespace backends are not supported (ReferenceGrant is not implemented)", key))
		return invalid
	case br.Port == nil:
		refs.add(gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("backendRef %s: port is required for a Service", key))
		return invalid
	}
	s, ok := b.lookup(key)
	if !ok {
		refs.add(gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("backend Service %s not found", key))
		return invalid
	}
	if _, ok := servicePort(s, uint32(*br.Port)); !ok {
		refs.add(gatewayv1.RouteReasonBackendNotFound, fmt.Sprintf("backend Service %s has no port %d", key, *br.Port))
		return invalid
	}
	refs.clusters = append(refs.clusters, clusterRef{key, uint32(*br.Port)})
	return weighted{cluster: ClusterName(s.Hostname, uint32(*br.Port)), weight: w, valid: true}
}

// routeAction picks cluster or weighted clusters; nil means no backend can
// take traffic (answer 500).
func routeAction(bs []weighted) *routev3.RouteAction {
	var live []weighted
	for _, w := range bs {
		if w.weight > 0 {
			live = append(live, w)
		}
	}
	switch {
	case len(live) == 0:
		return nil
	case len(live) == 1 && !live[0].valid:
		return nil
	case len(live) == 1:
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: live[0].cluster}}
	}
	wc := &routev3.WeightedCluster{}
	ra := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}
	for _, w := range live {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: w.cluster, Weight: wrapperspb.UInt32(w.weight)})
		if !w.valid {
			ra.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
		}
	}
	return ra
}

func wrapU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }
func wrapBool(v bool) *wrapperspb.BoolValue    { return wrapperspb.Bool(v) }
