package router

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

type routeMatch struct {
	kind          pathKind
	value         string
	caseSensitive bool
	re            *regexp.Regexp
	litPrefix     string // every regex match starts with it: a cheap pre-check
	headers       []strmatch.Header
	query         []queryMatch
}

type queryMatch struct {
	name    string
	present bool // present_match
	str     strmatch.String
}

func compileMatch(m *routev3.RouteMatch, path string) (routeMatch, error) {
	var out routeMatch
	if m == nil {
		return out, fmt.Errorf("%s: missing match", path)
	}
	if err := strmatch.OnlyFields(m, path, "prefix", "path", "safe_regex", "path_separated_prefix", "headers", "query_parameters", "case_sensitive"); err != nil {
		return out, err
	}
	out.caseSensitive = m.CaseSensitive == nil || m.CaseSensitive.Value
	switch p := m.PathSpecifier.(type) {
	case *routev3.RouteMatch_Prefix:
		out.kind, out.value = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.kind, out.value = pathExact, p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.kind, out.value = pathSeparatedPrefix, p.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := strmatch.Regex(p.SafeRegex, path+".safe_regex")
		if err != nil {
			return out, err
		}
		out.kind, out.re = pathRegex, re
		out.litPrefix, _ = re.LiteralPrefix()
	default:
		return out, fmt.Errorf("%s: no path specifier", path)
	}
	for i, h := range m.Headers {
		c, err := strmatch.CompileHeader(h, fmt.Sprintf("%s.headers[%d]", path, i))
		if err != nil {
			return out, err
		}
		out.headers = append(out.headers, c)
	}
	for i, q := range m.QueryParameters {
		qp := fmt.Sprintf("%s.query_parameters[%d]", path, i)
		if err := strmatch.OnlyFields(q, qp, "name", "string_match", "present_match"); err != nil {
			return out, err
		}
		qm := queryMatch{name: q.Name}
		if sm := q.GetStringMatch(); sm != nil {
			s, err := strmatch.Compile(sm, qp+".string_match")
			if err != nil {
				return out, err
			}
			qm.str = s
		} else if q.GetPresentMatch() {
			qm.present = true
		} else {
			return out, fmt.Errorf("%s: no match specifier", qp)
		}
		out.query = append(out.query, qm)
	}
	return out, nil
}

func (m *routeMatch) pathMatches(p string) bool {
	switch m.kind {
	case pathPrefix:
		if m.caseSensitive {
			return strings.HasPrefix(p, m.value)
		}
		return len(p) >= len(m.value) && strings.EqualFold(p[:len(m.value)], m.value)
	case pathExact:
		if m.caseSensitive {
			return p == m.value
		}
		return strings.EqualFold(p, m.value)
	case pathSeparatedPrefix:
		if !strings.HasPrefix(p, m.value) && (m.caseSensitive || len(p) < len(m.value) || !strings.EqualFold(p[:len(m.value)], m.value)) {
			return false
		}
		return len(p) == len(m.value) || p[len(m.value)] == '/'
	case pathRegex:
		return strings.HasPrefix(p, m.litPrefix) && m.re.MatchString(p)
	}
	return false
}

func (m *routeMatch) matches(req *RequestInfo, sr *strmatch.Request) bool {
	if !m.pathMatches(req.Path) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].Match(sr) {
			return false
		}
	}
	for i := range m.query {
		q := &m.query[i]
		vs, ok := req.Query[q.name]
		if !ok {
			return false
		}
		if q.present {
			continue
		}
		v := ""
		if len(vs) > 0 {
			v = vs[0]
		}
		if !q.str.Match(v) {
			return false
		}
	}
	return true
}

// matchedPrefix is the part of the path prefix_rewrite replaces: the prefix,
// or the whole path of an exact match (as Envoy does).
func (m *routeMatch) matchedPrefix() string {
	if m.kind == pathPrefix || m.kind == pathSeparatedPrefix || m.kind == pathExact {
		return m.value
	}
	return ""
}
