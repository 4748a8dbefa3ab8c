package router

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

// DefaultTimeout is Envoy's route timeout when the route does not set one.
const DefaultTimeout = 15 * time.Second

// Route is one compiled route and everything needed to act on it.
type Route struct {
	Name        string
	VirtualHost string
	match       routeMatch

	// Exactly one of Cluster, WeightedClusters, Redirect, DirectResponse is set.
	Cluster          string
	WeightedClusters []WeightedCluster
	totalWeight      uint64
	Redirect         *Redirect
	DirectResponse   *DirectResponse
	// ClusterNotFoundStatus answers requests whose picked cluster is unknown
	// (Envoy's cluster_not_found_response_code): 503, 404 or 500.
	ClusterNotFoundStatus int

	PrefixRewrite string // replaces the matched prefix
	regexRewrite  *regexp.Regexp
	regexSub      string
	HostRewrite   string

	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation

	// Timeout bounds the whole request, retries included; 0 disables it.
	Timeout time.Duration
	// PerTryTimeout bounds each upstream attempt; 0 means none.
	PerTryTimeout time.Duration
	Retry         *RetryPolicy // nil: no retries
	Fault         *Fault       // nil: no fault injection
	// Authz holds RBAC engines overriding the listener's RBAC http filters of
	// the same name for this route (from the route, else its virtual host).
	Authz map[string]*authz.Engine
}

// WeightedCluster is one share of a weighted route.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// Redirect is a redirect action.
type Redirect struct {
	Scheme        string // "" keeps the request's
	Host          string // "" keeps the request's
	Port          uint32 // 0 keeps the request's (dropped when the scheme changes)
	Path          string // full path replacement
	PrefixRewrite string // replaces the matched prefix
	regexRewrite  *regexp.Regexp
	regexSub      string
	StripQuery    bool
	Status        int
}

// DirectResponse answers the request from the waypoint.
type DirectResponse struct {
	Status int
	Body   string
}

func compileRoute(r *routev3.Route, path string, perFilter []map[string]*anypb.Any, cache engineCache) (*Route, error) {
	if err := strmatch.OnlyFields(r, path, "name", "match", "route", "redirect", "direct_response",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	m, err := compileMatch(r.Match, path+".match")
	if err != nil {
		return nil, err
	}
	out := &Route{Name: r.Name, match: m}
	if out.RequestHeaders, err = compileMutation(r.RequestHeadersToAdd, r.RequestHeadersToRemove, path+".request_headers_to_add"); err != nil {
		return nil, err
	}
	if out.ResponseHeaders, err = compileMutation(r.ResponseHeadersToAdd, r.ResponseHeadersToRemove, path+".response_headers_to_add"); err != nil {
		return nil, err
	}
	switch a := r.Action.(type) {
	case *routev3.Route_Route:
		if err := out.compileAction(a.Route, path+".route"); err != nil {
			return nil, err
		}
	case *routev3.Route_Redirect:
		if out.Redirect, err = compileRedirect(a.Redirect, path+".redirect"); err != nil {
			return nil, err
		}
	case *routev3.Route_DirectResponse:
		if err := strmatch.OnlyFields(a.DirectResponse, path+".direct_response", "status", "body"); err != nil {
			return nil, err
		}
		dr := &DirectResponse{Status: int(a.DirectResponse.Status)}
		if b := a.DirectResponse.Body; b != nil {
			if err := strmatch.OnlyFields(b, path+".direct_response.body", "inline_string", "inline_bytes"); err != nil {
				return nil, err
			}
			dr.Body = b.GetInlineString() + string(b.GetInlineBytes())
		}
		out.DirectResponse = dr
	default:
		return nil, fmt.Errorf("%s: no action", path)
	}
	if err := out.compilePerFilter(perFilter, path, cache); err != nil {
		return nil, err
	}
	return out, nil
}

func (out *Route) compileAction(a *routev3.RouteAction, path string) error {
	if err := strmatch.OnlyFields(a, path, "cluster", "weighted_clusters", "cluster_not_found_response_code",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "timeout", "retry_policy"); err != nil {
		return err
	}
	switch c := a.ClusterSpecifier.(type) {
	case *routev3.RouteAction_Cluster:
		out.Cluster = c.Cluster
	case *routev3.RouteAction_WeightedClusters:
		if err := strmatch.OnlyFields(c.WeightedClusters, path+".weighted_clusters", "clusters"); err != nil {
			return err
		}
		for i, w := range c.WeightedClusters.Clusters {
			if err := strmatch.OnlyFields(w, fmt.Sprintf("%s.weighted_clusters.clusters[%d]", path, i), "name", "weight"); err != nil {
				return err
			}
			out.WeightedClusters = append(out.WeightedClusters, WeightedCluster{Name: w.Name, Weight: w.GetWeight().GetValue()})
			out.totalWeight += uint64(w.GetWeight().GetValue())
		}
		if out.totalWeight == 0 {
			return fmt.Errorf("%s.weighted_clusters: total weight is 0", path)
		}
	default:
		return fmt.Errorf("%s: no cluster specifier", path)
	}
	switch a.ClusterNotFoundResponseCode {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		out.ClusterNotFoundStatus = http.StatusServiceUnavailable
	case routev3.RouteAction_NOT_FOUND:
		out.ClusterNotFoundStatus = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		out.ClusterNotFoundStatus = http.StatusInternalServerError
	}
	out.PrefixRewrite = a.PrefixRewrite
	if rr := a.RegexRewrite; rr != nil {
		re, sub, err := compileRegexRewrite(rr, path+".regex_rewrite")
		if err != nil {
			return err
		}
		out.regexRewrite, out.regexSub = re, sub
	}
	out.HostRewrite = a.GetHostRewriteLiteral()
	out.Timeout = DefaultTimeout
	if a.Timeout != nil {
		out.Timeout = a.Timeout.AsDuration()
	}
	if rp := a.RetryPolicy; rp != nil {
		p, per, err := compileRetry(rp, path+".retry_policy")
		if err != nil {
			return err
		}
		out.Retry, out.PerTryTimeout = p, per
	}
	return nil
}

var envoySubst = regexp.MustCompile(`\\([0-9])`)

func compileRegexRewrite(rr *matcherv3.RegexMatchAndSubstitute, path string) (*regexp.Regexp, string, error) {
	if err := strmatch.OnlyFields(rr.Pattern, path+".pattern", "regex", "google_re2"); err != nil {
		return nil, "", err
	}
	// Envoy replaces every match of the (not anchored) pattern.
	re, err := regexp.Compile(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, "", fmt.Errorf("%s.pattern %q: %w", path, rr.GetPattern().GetRegex(), err)
	}
	sub := strings.ReplaceAll(rr.Substitution, "$", "$$")
	return re, envoySubst.ReplaceAllString(sub, "$${$1}"), nil
}

func compileRedirect(r *routev3.RedirectAction, path string) (*Redirect, error) {
	if err := strmatch.OnlyFields(r, path, "scheme_redirect", "https_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, err
	}
	out := &Redirect{Host: r.HostRedirect, Port: r.PortRedirect, StripQuery: r.StripQuery}
	switch s := r.SchemeRewriteSpecifier.(type) {
	case *routev3.RedirectAction_SchemeRedirect:
		out.Scheme = s.SchemeRedirect
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.Scheme = "https"
		}
	}
	switch p := r.PathRewriteSpecifier.(type) {
	case *routev3.RedirectAction_PathRedirect:
		out.Path = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		out.PrefixRewrite = p.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		re, sub, err := compileRegexRewrite(p.RegexRewrite, path+".regex_rewrite")
		if err != nil {
			return nil, err
		}
		out.regexRewrite, out.regexSub = re, sub
	}
	switch r.ResponseCode {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.Status = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		out.Status = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		out.Status = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.Status = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.Status = http.StatusPermanentRedirect
	default:
		return nil, fmt.Errorf("%s.response_code %s: %w", path, r.ResponseCode, ErrUnsupported)
	}
	return out, nil
}

// PickCluster chooses the upstream cluster; weighted shares are drawn with
// rnd (callers own it: *rand.Rand is not safe for concurrent use).
func (r *Route) PickCluster(rnd *rand.Rand) string {
	if r.Cluster != "" || len(r.WeightedClusters) == 0 {
		return r.Cluster
	}
	n := rnd.Uint64N(r.totalWeight)
	for _, w := range r.WeightedClusters {
		if n < uint64(w.Weight) {
			return w.Name
		}
		n -= uint64(w.Weight)
	}
	return r.WeightedClusters[len(r.WeightedClusters)-1].Name
}

// RewritePath returns the upstream path (without query) for a request path.
func (r *Route) RewritePath(p string) string {
	if r.regexRewrite != nil {
		return r.regexRewrite.ReplaceAllString(p, r.regexSub)
	}
	if r.PrefixRewrite != "" {
		if pre := r.match.matchedPrefix(); pre != "" && len(p) >= len(pre) {
			return r.PrefixRewrite + p[len(pre):]
		}
	}
	return p
}

// RedirectLocation builds the Location of a redirect route for a request
// that arrived with the given scheme ("http" inside the mesh).
func (r *Route) RedirectLocation(req RequestInfo, scheme, rawQuery string) string {
	rd := r.Redirect
	if rd == nil {
		return ""
	}
	host, port := req.Host, ""
	if h, p, err := net.SplitHostPort(req.Host); err == nil {
		host, port = h, p
	}
	if rd.Scheme != "" && rd.Scheme != scheme {
		scheme, port = rd.Scheme, "" // the new scheme's well-known port
	}
	if rd.Host != "" {
		host = rd.Host
	}
	if rd.Port != 0 {
		port = strconv.FormatUint(uint64(rd.Port), 10)
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	p := req.Path
	switch {
	case rd.Path != "":
		p = rd.Path
	case rd.regexRewrite != nil:
		p = rd.regexRewrite.ReplaceAllString(p, rd.regexSub)
	case rd.PrefixRewrite != "":
		if pre := r.match.matchedPrefix(); pre != "" && len(p) >= len(pre) {
			p = rd.PrefixRewrite + p[len(pre):]
		}
	}
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if port != "" {
		hp = net.JoinHostPort(host, port)
	}
	loc := scheme + "://" + hp + p
	if rawQuery != "" && !rd.StripQuery {
		loc += "?" + rawQuery
	}
	return loc
}

// HeaderMutation edits request or response headers.
type HeaderMutation struct {
	Remove []string // applied first
	Edits  []HeaderEdit
}

// HeaderEdit is one header addition.
type HeaderEdit struct {
	Name   string // canonical
	Value  string
	Action corev3.HeaderValueOption_HeaderAppendAction
}

// Empty reports whether the mutation changes nothing.
func (m HeaderMutation) Empty() bool { return len(m.Remove) == 0 && len(m.Edits) == 0 }

func compileMutation(add []*corev3.HeaderValueOption, remove []string, path string) (HeaderMutation, error) {
	var m HeaderMutation
	for _, r := range remove {
		m.Remove = append(m.Remove, http.CanonicalHeaderKey(r))
	}
	for i, h := range add {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := strmatch.OnlyFields(h, p, "header", "append_action"); err != nil {
			return m, err
		}
		if err := strmatch.OnlyFields(h.Header, p+".header", "key", "value"); err != nil {
			return m, err
		}
		m.Edits = append(m.Edits, HeaderEdit{Name: http.CanonicalHeaderKey(h.Header.GetKey()), Value: h.Header.GetValue(), Action: h.AppendAction})
	}
	return m, nil
}

// Apply edits h in place: removals first, then additions in order.
func (m HeaderMutation) Apply(h http.Header) {
	for _, r := range m.Remove {
		delete(h, r)
	}
	for _, e := range m.Edits {
		_, exists := h[e.Name]
		switch e.Action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h[e.Name] = append(h[e.Name], e.Value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h[e.Name] = []string{e.Value}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[e.Name] = []string{e.Value}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h[e.Name] = []string{e.Value}
			}
		}
	}
}
