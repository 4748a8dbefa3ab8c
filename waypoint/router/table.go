package router

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

// ErrUnsupported is wrapped by errors about fields the waypoint does not
// implement (NACK these).
var ErrUnsupported = strmatch.ErrUnsupported

// RequestInfo is the part of a request routing looks at.
type RequestInfo struct {
	Host    string // :authority / Host header, port included if sent
	Method  string
	Path    string // without the query string
	Headers http.Header
	Query   url.Values
}

// Table is a compiled RouteConfiguration. It is immutable and safe for
// concurrent use.
type Table struct {
	Name     string
	exact    map[string]*VirtualHost
	suffixes []wildcard // "*.foo.com" → ".foo.com", longest first
	prefixes []wildcard // "foo.*" → "foo.", longest first
	star     *VirtualHost
}

type wildcard struct {
	part string
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name   string
	Routes []*Route
}

// Compile builds a Table; errors name the offending field.
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, fmt.Errorf("nil RouteConfiguration")
	}
	path := "route_configuration[" + rc.Name + "]"
	if err := strmatch.OnlyFields(rc, path, "name", "virtual_hosts", "validate_clusters", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	t := &Table{Name: rc.Name, exact: map[string]*VirtualHost{}}
	seen := map[string]bool{}
	cache := engineCache{} // a virtual host's RBAC override is compiled once for all its routes
	for i, v := range rc.VirtualHosts {
		vpath := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		if err := strmatch.OnlyFields(v, vpath, "name", "domains", "routes", "typed_per_filter_config"); err != nil {
			return nil, err
		}
		vh := &VirtualHost{Name: v.Name}
		for j, r := range v.Routes {
			cr, err := compileRoute(r, fmt.Sprintf("%s.routes[%d]", vpath, j), []map[string]*anypb.Any{rc.TypedPerFilterConfig, v.TypedPerFilterConfig, r.TypedPerFilterConfig}, cache)
			if err != nil {
				return nil, err
			}
			cr.VirtualHost = v.Name
			vh.Routes = append(vh.Routes, cr)
		}
		for _, d := range v.Domains {
			d = strings.ToLower(d)
			if seen[d] {
				return nil, fmt.Errorf("%s.domains: %q is served by two virtual hosts", vpath, d)
			}
			seen[d] = true
			switch {
			case d == "*":
				t.star = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	byLen := func(ws []wildcard) {
		sort.SliceStable(ws, func(i, j int) bool { return len(ws[i].part) > len(ws[j].part) })
	}
	byLen(t.suffixes)
	byLen(t.prefixes)
	return t, nil
}

// VirtualHostFor picks the virtual host for an authority: exact domain
// (as sent, then without the port), then the longest suffix wildcard, then
// the longest prefix wildcard (each as sent, then without the port), then "*".
func (t *Table) VirtualHostFor(host string) *VirtualHost {
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	bare := ""
	if h, _, err := net.SplitHostPort(host); err == nil {
		bare = h
		if strings.Contains(h, ":") {
			bare = host[:len(h)+2] // keep the brackets of an IPv6 literal
		}
	}
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	if vh, ok := t.exact[bare]; ok && bare != "" {
		return vh
	}
	if vh := wildcardLookup(t.suffixes, host, bare, strings.HasSuffix); vh != nil {
		return vh
	}
	if vh := wildcardLookup(t.prefixes, host, bare, strings.HasPrefix); vh != nil {
		return vh
	}
	return t.star
}

func wildcardLookup(ws []wildcard, host, bare string, has func(s, part string) bool) *VirtualHost {
	for _, h := range [2]string{host, bare} {
		if h == "" {
			continue
		}
		for _, w := range ws {
			if len(h) > len(w.part) && has(h, w.part) {
				return w.vh
			}
		}
	}
	return nil
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// Match returns the first route of the request's virtual host that matches.
func (t *Table) Match(req RequestInfo) (*Route, bool) {
	vh := t.VirtualHostFor(req.Host)
	if vh == nil {
		return nil, false
	}
	sr := strmatch.Request{Method: req.Method, Authority: req.Host, Path: req.Path, Headers: req.Headers}
	for _, r := range vh.Routes {
		if r.match.matches(&req, &sr) {
			return r, true
		}
	}
	return nil, false
}
