package filter

import (
	"net/http"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/router"
)

func TestNextTraceparent(t *testing.T) {
	span := [8]byte{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x32}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-01", true},
		{"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-00", true},
		{" 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01 ", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-01", true},
		// A future version with extra fields keeps its trace, sent as 00.
		{"01-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-extra", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332-01", true},
		{"", "", false},
		{"ff-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "", false},
		{"00-0AF7651916CD43DD8448EB211C80319C-00f067aa0ba902b7-01", "", false},
		{"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-x", "", false},
		{"00_0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", "", false},
	} {
		got, ok := NextTraceparent(tc.in, span)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NextTraceparent(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRequestID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, b := range [][16]byte{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {1, 2, 3}} {
		if id := RequestID(b); !re.MatchString(id) {
			t.Errorf("RequestID(%x) = %q, not a v4 UUID", b, id)
		}
	}
	if RequestID([16]byte{1}) == RequestID([16]byte{2}) {
		t.Error("different bytes, same id")
	}
}

func TestAppendForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		prior  []string
		client string
		want   string
	}{
		{nil, "10.0.0.1", "10.0.0.1"},
		{[]string{"1.2.3.4"}, "10.0.0.1", "1.2.3.4, 10.0.0.1"},
		{[]string{"1.2.3.4", "5.6.7.8"}, "::ffff:10.0.0.1", "1.2.3.4, 5.6.7.8, 10.0.0.1"},
		{[]string{"1.2.3.4"}, "", "1.2.3.4"},
		{nil, "2001:db8::1", "2001:db8::1"},
	} {
		h := http.Header{}
		for _, p := range tc.prior {
			h.Add("X-Forwarded-For", p)
		}
		var a netip.Addr
		if tc.client != "" {
			a = netip.MustParseAddr(tc.client)
		}
		AppendForwardedFor(h, a)
		if got := h.Get("X-Forwarded-For"); got != tc.want || len(h.Values("X-Forwarded-For")) > 1 && tc.client != "" {
			t.Errorf("prior %v + %q = %q (%d values), want %q", tc.prior, tc.client, got, len(h.Values("X-Forwarded-For")), tc.want)
		}
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/json": false, "": false, "application/grpcx": false,
	} {
		if got := IsGRPC(ct); got != want {
			t.Errorf("IsGRPC(%q) = %v", ct, got)
		}
	}
}

func TestGRPCStatus(t *testing.T) {
	for code, want := range map[int]int{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2, 418: 2} {
		if got := GRPCStatus(code); got != want {
			t.Errorf("GRPCStatus(%d) = %d, want %d", code, got, want)
		}
	}
}

func TestUpstreamHTTP2(t *testing.T) {
	for _, tc := range []struct {
		cluster, grpc bool
		major         int
		want          bool
	}{
		{true, false, 1, true}, {false, false, 2, false}, {false, true, 2, true}, {false, true, 1, false}, {true, true, 2, true},
	} {
		if got := UpstreamHTTP2(tc.cluster, tc.grpc, tc.major); got != tc.want {
			t.Errorf("UpstreamHTTP2(%v, %v, %d) = %v", tc.cluster, tc.grpc, tc.major, got)
		}
	}
}

func TestShouldRetry(t *testing.T) {
	gw := &router.RetryPolicy{Retries: 2, RetryOn: []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"},
		RetriableStatusCodes: []int{502, 503}}
	fivexx := &router.RetryPolicy{Retries: 1, RetryOn: []string{"5xx"}}
	reset := &router.RetryPolicy{Retries: 1, RetryOn: []string{"reset"}}
	st := func(code int) Attempt { return Attempt{Status: code, GRPCStatus: -1} }
	for _, tc := range []struct {
		name       string
		p          *router.RetryPolicy
		n          int
		a          Attempt
		replayable bool
		left       time.Duration
		want       bool
	}{
		{"no policy", nil, 1, st(503), true, time.Second, false},
		{"503 listed", gw, 1, st(503), true, time.Second, true},
		{"500 not listed", gw, 1, st(500), true, time.Second, false},
		{"200", gw, 1, st(200), true, time.Second, false},
		{"retries used up", gw, 3, st(503), true, time.Second, false},
		{"last retry", gw, 2, st(503), true, time.Second, true},
		{"body not replayable", gw, 1, st(503), false, time.Second, false},
		{"deadline passed", gw, 1, st(503), true, 0, false},
		{"connect failure", gw, 1, Attempt{ConnectFailure: true, GRPCStatus: -1}, true, time.Second, true},
		{"per-try timeout, not 5xx policy", gw, 1, Attempt{PerTryTimeout: true, GRPCStatus: -1}, true, time.Second, false},
		{"per-try timeout, 5xx policy", fivexx, 1, Attempt{PerTryTimeout: true, GRPCStatus: -1}, true, time.Second, true},
		{"reset, gateway policy", gw, 1, Attempt{Reset: true, GRPCStatus: -1}, true, time.Second, false},
		{"reset, reset policy", reset, 1, Attempt{Reset: true, GRPCStatus: -1}, true, time.Second, true},
		{"grpc unavailable", gw, 1, Attempt{Status: 200, GRPCStatus: 14}, true, time.Second, true},
		{"grpc cancelled", gw, 1, Attempt{Status: 200, GRPCStatus: 1}, true, time.Second, true},
		{"grpc not found", gw, 1, Attempt{Status: 200, GRPCStatus: 5}, true, time.Second, false},
		{"5xx policy 500", fivexx, 1, st(500), true, time.Second, true},
	} {
		if got := ShouldRetry(tc.p, tc.n, tc.a, tc.replayable, tc.left); got != tc.want {
			t.Errorf("%s: ShouldRetry = %v, want %v", tc.name, got, tc.want)
		}
	}
}
