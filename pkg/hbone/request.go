package hbone

import (
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// Header names of an HBONE CONNECT request.
const (
	HeaderForwarded   = "forwarded"
	HeaderBaggage     = "baggage"
	HeaderTraceparent = "traceparent"
)

// Target is what an HBONE CONNECT request asks for, as parsed from its
// header block.
type Target struct {
	// Authority is the destination ip:port (the :authority pseudo-header).
	Authority netip.AddrPort
	// ForwardedFor is the original client address from `forwarded: for=`;
	// the zero Addr if the header is absent or unparsable.
	ForwardedFor netip.Addr
	// Baggage and Traceparent are passed through verbatim when present.
	Baggage     string
	Traceparent string
}

// ParseAuthority parses an HBONE :authority, "ip:port" or "[ipv6]:port".
// Host names, zones, port 0 and ports with leading zeros are refused.
func ParseAuthority(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("authority %q is not ip:port: %w", s, ErrBadRequest)
	}
	if ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("authority %q has an IPv6 zone: %w", s, ErrBadRequest)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("authority %q has port 0: %w", s, ErrBadRequest)
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && i+1 < len(s) && s[i+1] == '0' {
		return netip.AddrPort{}, fmt.Errorf("authority %q has a port with leading zeros: %w", s, ErrBadRequest)
	}
	return ap, nil
}

// FormatAuthority formats a destination as an HBONE :authority.
func FormatAuthority(ap netip.AddrPort) string { return ap.String() }

// ParseForwardedFor returns the address of the first for= parameter of a
// Forwarded header (RFC 7239): for=1.2.3.4, for="[2001:db8::1]" or
// for="[2001:db8::1]:1234". ok is false when there is none or it is not an
// IP address (obfuscated identifiers, "unknown").
func ParseForwardedFor(v string) (addr netip.Addr, ok bool) {
	elem, _, _ := strings.Cut(v, ",")
	for pair := range strings.SplitSeq(elem, ";") {
		k, val, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found || !strings.EqualFold(k, "for") {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if strings.HasPrefix(val, "[") {
			end := strings.IndexByte(val, ']')
			if end < 0 {
				return netip.Addr{}, false
			}
			rest := val[end+1:]
			if rest != "" && !strings.HasPrefix(rest, ":") {
				return netip.Addr{}, false
			}
			val = val[1:end]
		} else if a, err := netip.ParseAddrPort(val); err == nil {
			return a.Addr(), a.Addr().Zone() == ""
		}
		a, err := netip.ParseAddr(val)
		if err != nil || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a, true
	}
	return netip.Addr{}, false
}

// FormatForwardedFor formats a Forwarded header value naming addr, quoting
// IPv6 addresses as RFC 7239 requires.
func FormatForwardedFor(addr netip.Addr) string {
	if addr.Is6() && !addr.Is4In6() {
		return `for="[` + addr.String() + `]"`
	}
	return "for=" + addr.Unmap().String()
}

// ParseRequest checks the decoded header block of an HBONE request: the
// method must be CONNECT (not extended CONNECT) and :authority an ip:port;
// a stray :scheme or :path is ignored. Errors wrap ErrBadRequest and are
// answered with 400.
func ParseRequest(fields []hpack.HeaderField) (Target, error) {
	var (
		t                       Target
		method, authority       string
		haveAuthority, extended bool
	)
	for _, f := range fields {
		switch f.Name {
		case ":method":
			method = f.Value
		case ":authority":
			authority, haveAuthority = f.Value, true
		case ":protocol":
			extended = true
		case ":scheme", ":path":
			// RFC 9113 says a CONNECT carries neither; some HTTP/2
			// stacks add :scheme when given a URI with one. The target
			// is :authority either way, so tolerate them.
		case HeaderForwarded:
			if t.ForwardedFor.IsValid() {
				continue
			}
			if a, ok := ParseForwardedFor(f.Value); ok {
				t.ForwardedFor = a
			}
		case HeaderBaggage:
			t.Baggage = f.Value
		case HeaderTraceparent:
			t.Traceparent = f.Value
		}
	}
	if method != "CONNECT" {
		return Target{}, fmt.Errorf("method %q, HBONE accepts only CONNECT: %w", method, ErrBadRequest)
	}
	if extended {
		return Target{}, fmt.Errorf("extended CONNECT (:protocol) is not HBONE: %w", ErrBadRequest)
	}
	if !haveAuthority {
		return Target{}, fmt.Errorf("CONNECT without :authority: %w", ErrBadRequest)
	}
	ap, err := ParseAuthority(authority)
	if err != nil {
		return Target{}, err
	}
	t.Authority = ap
	return t, nil
}

// requestFields builds the header block of a CONNECT request for t.
func requestFields(t Target) []hpack.HeaderField {
	fs := make([]hpack.HeaderField, 0, 5)
	fs = append(fs,
		hpack.HeaderField{Name: ":method", Value: "CONNECT"},
		hpack.HeaderField{Name: ":authority", Value: FormatAuthority(t.Authority)},
	)
	if t.ForwardedFor.IsValid() {
		fs = append(fs, hpack.HeaderField{Name: HeaderForwarded, Value: FormatForwardedFor(t.ForwardedFor)})
	}
	if t.Baggage != "" {
		fs = append(fs, hpack.HeaderField{Name: HeaderBaggage, Value: t.Baggage})
	}
	if t.Traceparent != "" {
		fs = append(fs, hpack.HeaderField{Name: HeaderTraceparent, Value: t.Traceparent})
	}
	return fs
}
