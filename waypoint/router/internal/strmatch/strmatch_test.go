package strmatch

import (
	"errors"
	"net/http"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func TestString(t *testing.T) {
	exact := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "Foo"}}
	exactCI := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "Foo"}, IgnoreCase: true}
	prefixCI := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/API"}, IgnoreCase: true}
	suffix := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: ".html"}}
	contains := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "MID"}, IgnoreCase: true}
	regex := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "v[0-9]"}}}
	tests := []struct {
		m    *matcherv3.StringMatcher
		v    string
		want bool
	}{
		{exact, "Foo", true}, {exact, "foo", false},
		{exactCI, "fOO", true},
		{prefixCI, "/api/x", true}, {prefixCI, "/ap", false},
		{suffix, "/a.html", true}, {suffix, "/a.htm", false},
		{contains, "a-mid-b", true},
		{regex, "v1", true}, {regex, "v1x", false}, // whole-string match, as Envoy
	}
	for _, tt := range tests {
		s, err := Compile(tt.m, "m")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Match(tt.v); got != tt.want {
			t.Errorf("%v.Match(%q) = %v, want %v", tt.m, tt.v, got, tt.want)
		}
	}
}

func TestHeader(t *testing.T) {
	r := &Request{Method: "GET", Authority: "a:80", Path: "/p?q", Headers: http.Header{"X-A": {"1", "2"}}}
	sm := func(v string) *routev3.HeaderMatcher_StringMatch {
		return &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}
	}
	tests := []struct {
		h    *routev3.HeaderMatcher
		want bool
	}{
		{&routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: sm("GET")}, true},
		{&routev3.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: sm("a:80")}, true},
		{&routev3.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: sm("/p?q")}, true},
		{&routev3.HeaderMatcher{Name: "X-A", HeaderMatchSpecifier: sm("1,2")}, true},
		{&routev3.HeaderMatcher{Name: "x-a", HeaderMatchSpecifier: sm("1")}, false},
		{&routev3.HeaderMatcher{Name: "x-b", HeaderMatchSpecifier: sm("1")}, false},
		{&routev3.HeaderMatcher{Name: "x-b", HeaderMatchSpecifier: sm("1"), InvertMatch: true}, false}, // absent: Envoy
		{&routev3.HeaderMatcher{Name: "x-b", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}}, true},
		{&routev3.HeaderMatcher{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, true},
		{&routev3.HeaderMatcher{Name: "x-a", HeaderMatchSpecifier: sm("3"), InvertMatch: true}, true},
	}
	for i, tt := range tests {
		h, err := CompileHeader(tt.h, "h")
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Match(r); got != tt.want {
			t.Errorf("%d: %v.Match = %v, want %v", i, tt.h, got, tt.want)
		}
	}
}

func TestUnsupported(t *testing.T) {
	_, err := CompileHeader(&routev3.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{}}, "route.headers[0]")
	if !errors.Is(err, ErrUnsupported) || err.Error() != "route.headers[0].range_match: unsupported" {
		t.Errorf("error %v, want route.headers[0].range_match: unsupported", err)
	}
}
