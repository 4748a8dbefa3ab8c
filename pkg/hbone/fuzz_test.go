package hbone

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/http2/hpack"
)

func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"10.0.0.1:80", "[fd00::1]:443", "[fe80::1%eth0]:80", "example.com:80", "1.2.3.4:080", ":0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := ParseAuthority(s)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().Zone() != "" {
			t.Fatalf("ParseAuthority(%q) accepted %v", s, ap)
		}
		// What we accept, we format in a form we accept again, unchanged.
		again, err := ParseAuthority(FormatAuthority(ap))
		if err != nil || again != ap {
			t.Fatalf("re-parse of %q (from %q) = %v, %v", FormatAuthority(ap), s, again, err)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add("CONNECT", "10.0.0.1:80", "", "for=10.0.0.2", "b=1", "00-a-b-01")
	f.Add("CONNECT", "[fd00::1]:443", "", `for="[fd00::2]:99"`, "", "")
	f.Add("GET", "10.0.0.1:80", "/", "", "", "")
	f.Add("CONNECT", "10.0.0.1:80", "/chat", "for=unknown;proto=http", "", "")
	f.Fuzz(func(t *testing.T, method, authority, path, forwarded, baggage, traceparent string) {
		fields := hf(":method", method, ":authority", authority)
		if path != "" {
			fields = append(fields, hpack.HeaderField{Name: ":path", Value: path})
		}
		fields = append(fields, hf("forwarded", forwarded, "baggage", baggage, "traceparent", traceparent)...)
		got, err := ParseRequest(fields)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if method != "CONNECT" {
			t.Fatalf("accepted method %q", method)
		}
		if !got.Authority.IsValid() || got.Baggage != baggage || got.Traceparent != traceparent {
			t.Fatalf("ParseRequest = %+v", got)
		}
		if _, ok := ParseForwardedFor(forwarded); ok != got.ForwardedFor.IsValid() {
			t.Fatalf("forwarded %q: got %v", forwarded, got.ForwardedFor)
		}
		// A request we accept survives our own encoding.
		again, err := ParseRequest(requestFields(got))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		want := got
		want.ForwardedFor = unmap(got.ForwardedFor)
		if again != want {
			t.Fatalf("re-parse = %+v, want %+v", again, want)
		}
	})
}

func unmap(a netip.Addr) netip.Addr {
	if a.Is4In6() {
		return a.Unmap()
	}
	return a
}
