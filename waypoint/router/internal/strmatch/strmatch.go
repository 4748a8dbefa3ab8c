package strmatch

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrUnsupported is wrapped by every error about a field the waypoint does
// not implement.
var ErrUnsupported = errors.New("unsupported")

// OnlyFields returns an error naming the first field of m that is set and
// not in allowed. path prefixes the field name in the message.
func OnlyFields(m proto.Message, path string, allowed ...string) error {
	if m == nil {
		return nil
	}
	var bad string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		for _, a := range allowed {
			if a == name {
				return true
			}
		}
		bad = name
		return false
	})
	if bad != "" {
		return fmt.Errorf("%s.%s: %w", path, bad, ErrUnsupported)
	}
	return nil
}

type kind uint8

const (
	kExact kind = iota
	kPrefix
	kSuffix
	kContains
	kRegex
)

// String is a compiled StringMatcher.
type String struct {
	kind       kind
	val        string
	ignoreCase bool
	re         *regexp.Regexp
}

// Regex compiles an Envoy RegexMatcher (RE2, whole-string match).
func Regex(m *matcherv3.RegexMatcher, path string) (*regexp.Regexp, error) {
	if err := OnlyFields(m, path, "regex", "google_re2"); err != nil {
		return nil, err
	}
	re, err := regexp.Compile("^(?:" + m.GetRegex() + ")$")
	if err != nil {
		return nil, fmt.Errorf("%s.regex %q: %w", path, m.GetRegex(), err)
	}
	return re, nil
}

// Compile compiles a StringMatcher.
func Compile(m *matcherv3.StringMatcher, path string) (String, error) {
	if m == nil {
		return String{}, fmt.Errorf("%s: missing string matcher", path)
	}
	if err := OnlyFields(m, path, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return String{}, err
	}
	s := String{ignoreCase: m.GetIgnoreCase()}
	switch p := m.MatchPattern.(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.val = kExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.val = kPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.val = kSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.val = kContains, p.Contains
		if s.ignoreCase {
			s.val = strings.ToLower(s.val)
		}
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := Regex(p.SafeRegex, path+".safe_regex")
		if err != nil {
			return String{}, err
		}
		s.kind, s.re = kRegex, re
	default:
		return String{}, fmt.Errorf("%s: no match pattern", path)
	}
	return s, nil
}

// Match reports whether v matches.
func (s *String) Match(v string) bool {
	switch s.kind {
	case kExact:
		if s.ignoreCase {
			return strings.EqualFold(v, s.val)
		}
		return v == s.val
	case kPrefix:
		if s.ignoreCase {
			return len(v) >= len(s.val) && strings.EqualFold(v[:len(s.val)], s.val)
		}
		return strings.HasPrefix(v, s.val)
	case kSuffix:
		if s.ignoreCase {
			return len(v) >= len(s.val) && strings.EqualFold(v[len(v)-len(s.val):], s.val)
		}
		return strings.HasSuffix(v, s.val)
	case kContains:
		if s.ignoreCase {
			return strings.Contains(strings.ToLower(v), s.val)
		}
		return strings.Contains(v, s.val)
	case kRegex:
		return s.re.MatchString(v)
	}
	return false
}

// Request is what header matchers read: pseudo-headers and the rest.
type Request struct {
	Method    string
	Authority string
	Path      string // :path, query included
	Headers   http.Header
}

// Value returns a header's value as Envoy sees it: pseudo-headers from the
// request line, several values joined with ",".
func (r *Request) Value(name, canonical string) (string, bool) {
	switch name {
	case ":method":
		return r.Method, r.Method != ""
	case ":authority", "host":
		return r.Authority, r.Authority != ""
	case ":path":
		return r.Path, r.Path != ""
	case ":scheme":
		return "http", true
	}
	vs := r.Headers[canonical]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// Header is a compiled HeaderMatcher.
type Header struct {
	Name      string // lower case
	canonical string
	present   bool // present_match
	isPresent bool
	invert    bool
	str       String
}

// CompileHeader compiles a HeaderMatcher.
func CompileHeader(h *routev3.HeaderMatcher, path string) (Header, error) {
	if err := OnlyFields(h, path, "name", "string_match", "present_match", "invert_match"); err != nil {
		return Header{}, err
	}
	name := strings.ToLower(h.GetName())
	out := Header{Name: name, canonical: textproto.CanonicalMIMEHeaderKey(name), invert: h.GetInvertMatch()}
	switch m := h.HeaderMatchSpecifier.(type) {
	case *routev3.HeaderMatcher_StringMatch:
		s, err := Compile(m.StringMatch, path+".string_match")
		if err != nil {
			return Header{}, err
		}
		out.str = s
	case *routev3.HeaderMatcher_PresentMatch:
		out.isPresent, out.present = true, m.PresentMatch
	default:
		return Header{}, fmt.Errorf("%s: no header match specifier", path)
	}
	return out, nil
}

// Match follows Envoy: an absent header matches only present_match: false
// (or, inverted, present_match: true).
func (h *Header) Match(r *Request) bool {
	v, ok := r.Value(h.Name, h.canonical)
	if !ok {
		if h.invert {
			return h.isPresent && h.present
		}
		return h.isPresent && !h.present
	}
	var m bool
	if h.isPresent {
		m = h.present
	} else {
		m = h.str.Match(v)
	}
	return m != h.invert
}
