package hbone

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/http2/hpack"
)

func TestParseAuthority(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = error
	}{
		{"10.0.0.1:80", "10.0.0.1:80"},
		{"[fd00::1]:8080", "[fd00::1]:8080"},
		{"[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80"},
		{"255.255.255.255:65535", "255.255.255.255:65535"},
		{"10.0.0.1", ""},
		{"10.0.0.1:0", ""},
		{"10.0.0.1:080", ""},
		{"10.0.0.1:65536", ""},
		{"example.com:80", ""},
		{"fd00::1:80", ""},
		{"[fe80::1%eth0]:80", ""},
		{"010.0.0.1:80", ""},
		{":80", ""},
		{"", ""},
		{"10.0.0.1:80 ", ""},
	}
	for _, tt := range tests {
		got, err := ParseAuthority(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrBadRequest) {
				t.Errorf("ParseAuthority(%q) = %v, %v; want ErrBadRequest", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseAuthority(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseForwardedFor(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not ok
	}{
		{"for=10.0.0.1", "10.0.0.1"},
		{"For=10.0.0.1", "10.0.0.1"},
		{`for="10.0.0.1"`, "10.0.0.1"},
		{"for=10.0.0.1:1234", "10.0.0.1"},
		{`for="[2001:db8::1]"`, "2001:db8::1"},
		{`for="[2001:db8::1]:4711"`, "2001:db8::1"},
		{"for=10.0.0.1;proto=https", "10.0.0.1"},
		{"proto=https; for=10.0.0.2", "10.0.0.2"},
		{"for=10.0.0.1, for=10.0.0.2", "10.0.0.1"},
		{"for=unknown", ""},
		{"for=_hidden", ""},
		{`for="[2001:db8::1"`, ""},
		{`for="[2001:db8::1]x"`, ""},
		{"by=10.0.0.1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := ParseForwardedFor(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("ParseForwardedFor(%q) = %v, want not ok", tt.in, got)
			}
			continue
		}
		if !ok || got.String() != tt.want {
			t.Errorf("ParseForwardedFor(%q) = %v, %v; want %s", tt.in, got, ok, tt.want)
		}
	}
}

func TestFormatForwardedForRoundTrip(t *testing.T) {
	for _, s := range []string{"10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"} {
		a := netip.MustParseAddr(s)
		got, ok := ParseForwardedFor(FormatForwardedFor(a))
		if !ok || got != a.Unmap() {
			t.Errorf("round trip %s via %q = %v, %v", s, FormatForwardedFor(a), got, ok)
		}
	}
}

func hf(kv ...string) []hpack.HeaderField {
	var fs []hpack.HeaderField
	for i := 0; i < len(kv); i += 2 {
		fs = append(fs, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return fs
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		fields  []hpack.HeaderField
		want    Target
		wantErr bool
	}{
		{"minimal", hf(":method", "CONNECT", ":authority", "10.0.0.1:80"),
			Target{Authority: netip.MustParseAddrPort("10.0.0.1:80")}, false},
		{"all headers", hf(":method", "CONNECT", ":authority", "[fd00::1]:443", "forwarded", `for="[fd00::2]"`, "baggage", "a=b", "traceparent", "00-x-y-01", "user-agent", "z"),
			Target{Authority: netip.MustParseAddrPort("[fd00::1]:443"), ForwardedFor: netip.MustParseAddr("fd00::2"), Baggage: "a=b", Traceparent: "00-x-y-01"}, false},
		{"bad forwarded is ignored", hf(":method", "CONNECT", ":authority", "10.0.0.1:80", "forwarded", "for=unknown"),
			Target{Authority: netip.MustParseAddrPort("10.0.0.1:80")}, false},
		{"first forwarded wins", hf(":method", "CONNECT", ":authority", "10.0.0.1:80", "forwarded", "for=1.1.1.1", "forwarded", "for=2.2.2.2"),
			Target{Authority: netip.MustParseAddrPort("10.0.0.1:80"), ForwardedFor: netip.MustParseAddr("1.1.1.1")}, false},
		{"stray scheme and path", hf(":method", "CONNECT", ":scheme", "https", ":authority", "10.0.0.1:80", ":path", "/"),
			Target{Authority: netip.MustParseAddrPort("10.0.0.1:80")}, false},
		{"GET", hf(":method", "GET", ":authority", "10.0.0.1:80", ":path", "/", ":scheme", "https"), Target{}, true},
		{"no method", hf(":authority", "10.0.0.1:80"), Target{}, true},
		{"no authority", hf(":method", "CONNECT"), Target{}, true},
		{"empty authority", hf(":method", "CONNECT", ":authority", ""), Target{}, true},
		{"extended CONNECT", hf(":method", "CONNECT", ":authority", "10.0.0.1:80", ":protocol", "websocket", ":path", "/", ":scheme", "https"), Target{}, true},
		{"host name", hf(":method", "CONNECT", ":authority", "svc.ns:80"), Target{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.fields)
			if tt.wantErr {
				if !errors.Is(err, ErrBadRequest) {
					t.Fatalf("err = %v, want ErrBadRequest", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRequest = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestRequestFieldsRoundTrip(t *testing.T) {
	in := Target{
		Authority:    netip.MustParseAddrPort("[fd00::1]:443"),
		ForwardedFor: netip.MustParseAddr("fd00::9"),
		Baggage:      "k=v",
		Traceparent:  "00-abc-def-01",
	}
	got, err := ParseRequest(requestFields(in))
	if err != nil || got != in {
		t.Fatalf("ParseRequest(requestFields(%+v)) = %+v, %v", in, got, err)
	}
}

func TestPickConn(t *testing.T) {
	pack := spread{at: -1, maxConns: 4}
	sp := spread{at: 4, maxConns: 3}
	u := func(active int) connLoad { return connLoad{usable: true, active: active, max: 100} }
	tests := []struct {
		name  string
		sp    spread
		loads []connLoad
		want  int
	}{
		{"none", pack, nil, -1},
		{"room on first", pack, []connLoad{u(5), u(0)}, 0},
		{"first full", pack, []connLoad{{usable: true, active: 100, max: 100}, u(3)}, 1},
		{"all full", pack, []connLoad{{usable: true, active: 100, max: 100}, {usable: true, active: 100, max: 100}}, -1},
		{"peer limit lower", pack, []connLoad{{usable: true, active: 10, max: 10}}, -1},
		{"unusable skipped", pack, []connLoad{{usable: false, active: 0, max: 100}, {usable: true, active: 99, max: 100}}, 1},
		{"only unusable", pack, []connLoad{{usable: false, active: 0, max: 100}}, -1},
		{"stale certificate skipped", pack, []connLoad{{usable: true, stale: true, active: 0, max: 100}, u(50)}, 1},
		{"only stale", pack, []connLoad{{usable: true, stale: true, active: 0, max: 100}}, -1},

		{"spread: none", sp, nil, -1},
		{"spread: packs below the threshold", sp, []connLoad{u(3), u(0)}, 0},
		{"spread: first at threshold, second has room", sp, []connLoad{u(4), u(2)}, 1},
		{"spread: all at threshold, dial another", sp, []connLoad{u(4), u(5)}, -1},
		{"spread: at max conns, least loaded", sp, []connLoad{u(9), u(6), u(7)}, 1},
		{"spread: at max conns, all full", sp, []connLoad{{usable: true, active: 10, max: 10}, {usable: true, active: 10, max: 10}, {usable: true, active: 10, max: 10}}, -1},
		{"spread: least loaded skips full ones", sp, []connLoad{{usable: true, active: 3, max: 3}, u(8), u(5)}, 2},
		{"spread: stale and unusable do not count", sp, []connLoad{{usable: true, stale: true, active: 0, max: 100}, {usable: false, max: 100}, u(4), u(4)}, -1},
		{"spread: peer limit below threshold", sp, []connLoad{{usable: true, active: 2, max: 2}, u(1)}, 1},
	}
	for _, tt := range tests {
		if got := pickConn(tt.loads, tt.sp); got != tt.want {
			t.Errorf("%s: pickConn = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestStatusErrorIs(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{400, ErrBadRequest}, {401, ErrDenied}, {403, ErrDenied}, {503, ErrUpstreamUnreachable}, {504, ErrUpstreamUnreachable},
	}
	for _, tt := range tests {
		err := error(&StatusError{Status: tt.status, Peer: "p", Authority: "a"})
		if !errors.Is(err, tt.want) {
			t.Errorf("status %d: errors.Is(%v) = false", tt.status, tt.want)
		}
	}
	if errors.Is(&StatusError{Status: 500}, ErrDenied) || errors.Is(&StatusError{Status: 500}, ErrUpstreamUnreachable) {
		t.Error("500 matches a sentinel")
	}
}
