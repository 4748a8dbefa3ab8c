package waypointxds

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func cloneRoute(r *routev3.Route) *routev3.Route { return proto.Clone(r).(*routev3.Route) }
func cloneMatch(m *routev3.RouteMatch) *routev3.RouteMatch {
	return proto.Clone(m).(*routev3.RouteMatch)
}

func (b *builder) attachGRPCRoutes() {
	for _, r := range b.in.GRPCRoutes {
		m := routeMeta{kind: KindGRPCRoute, namespace: r.Namespace, name: r.Name, gen: r.Generation, created: r.CreationTimestamp,
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
		var cands []candidate
		for ri, rule := range r.Spec.Rules {
			tmpl := &routev3.Route{}
			for fi, f := range rule.Filters {
				switch {
				case f.Type == gatewayv1.GRPCRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
					tmpl.RequestHeadersToAdd, tmpl.RequestHeadersToRemove = headerMods(f.RequestHeaderModifier)
				case f.Type == gatewayv1.GRPCRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
					tmpl.ResponseHeadersToAdd, tmpl.ResponseHeadersToRemove = headerMods(f.ResponseHeaderModifier)
				default:
					unsupported = append(unsupported, fmt.Sprintf("rules[%d].filters[%d]: filter type %s", ri, fi, f.Type))
				}
			}
			var backends []weighted
			for bi, br := range rule.BackendRefs {
				if len(br.Filters) > 0 {
					unsupported = append(unsupported, fmt.Sprintf("rules[%d].backendRefs[%d].filters", ri, bi))
				}
				backends = append(backends, b.backend(r.Namespace, br.BackendRef, refs))
			}
			if ra := routeAction(backends); ra != nil {
				ra.Timeout = durationpb.New(0)
				tmpl.Action = &routev3.Route_Route{Route: ra}
			} else {
				tmpl.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
			}
			if fault != nil {
				tmpl.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilter: mustAny(fault)}
			}
			matches := rule.Matches
			if len(matches) == 0 {
				matches = []gatewayv1.GRPCRouteMatch{{}}
			}
			for mi, gm := range matches {
				match, c, err := grpcMatch(gm)
				if err != nil {
					unsupported = append(unsupported, fmt.Sprintf("rules[%d].matches[%d]: %v", ri, mi, err))
					continue
				}
				c.created, c.key, c.rule, c.idx = r.CreationTimestamp.Time, r.Namespace+"/"+r.Name, ri, mi
				rt := cloneRoute(tmpl)
				rt.Name = fmt.Sprintf("%s.%s.%d.%d", r.Namespace, r.Name, ri, mi)
				rt.Match = match
				c.route = rt
				cands = append(cands, c)
			}
		}
		if !b.finish(m, atts, unsupported, refs) {
			continue
		}
		for _, c := range cands {
			b.place(atts, c, func() *routev3.Route { return cloneRoute(c.route) })
		}
	}
}

// grpcMatch maps a GRPCRoute match onto the HTTP/2 path /<service>/<method>.
func grpcMatch(gm gatewayv1.GRPCRouteMatch) (*routev3.RouteMatch, candidate, error) {
	var c candidate
	m := &routev3.RouteMatch{}
	c.pathRank, c.pathLen = 1, 1
	m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	if mm := gm.Method; mm != nil {
		svc, meth := "", ""
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			meth = *mm.Method
		}
		regex := mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression
		switch {
		case svc == "" && meth == "":
		case !regex && svc != "" && meth != "":
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + svc + "/" + meth}
			c.pathRank, c.pathLen = 0, len(svc)+len(meth)+2
		case !regex && meth == "":
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + svc + "/"}
			c.pathRank, c.pathLen = 1, len(svc)+2
		default:
			s, me := regexp.QuoteMeta(svc), regexp.QuoteMeta(meth)
			if regex {
				s, me = svc, meth
			}
			if s == "" {
				s = "[^/]+"
			}
			if me == "" {
				me = "[^/]+"
			}
			re := "/" + s + "/" + me
			if _, err := regexp.Compile(re); err != nil {
				return nil, c, fmt.Errorf("method regex %q: %w", re, err)
			}
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
			c.pathRank, c.pathLen = 2, len(re)
		}
	}
	for _, h := range gm.Headers {
		sm, err := stringMatch(h.Type != nil && *h.Type == gatewayv1.GRPCHeaderMatchRegularExpression, h.Value)
		if err != nil {
			return nil, c, fmt.Errorf("header %s: %w", h.Name, err)
		}
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: strings.ToLower(string(h.Name)),
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}})
	}
	c.headers = len(gm.Headers)
	return m, c, nil
}
