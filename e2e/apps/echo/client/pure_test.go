package client

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "tcp://10.0.0.1:9000", want: Target{Scheme: "tcp", Addr: "10.0.0.1:9000"}},
		{in: "http://echo.demo:8080/a/b?status=503", want: Target{Scheme: "http", Addr: "echo.demo:8080", Path: "/a/b?status=503"}},
		{in: "http://echo.demo", want: Target{Scheme: "http", Addr: "echo.demo:80", Path: "/"}},
		{in: "https://echo.demo/x", want: Target{Scheme: "https", Addr: "echo.demo:443", Path: "/x"}},
		{in: "h2c://127.0.0.1:8080", want: Target{Scheme: "h2c", Addr: "127.0.0.1:8080", Path: "/"}},
		{in: "grpc://[::1]:7070", want: Target{Scheme: "grpc", Addr: "[::1]:7070"}},
		{in: "GRPC://h:7070/", want: Target{Scheme: "grpc", Addr: "h:7070"}},
		{in: "tcp://host", wantErr: "no port"},
		{in: "grpc://host:7070/path", wantErr: "no path"},
		{in: "udp://host:53", wantErr: "unknown scheme"},
		{in: "host:80", wantErr: "no host:port"},
		{in: "", wantErr: "no host:port"},
		{in: "http://%zz", wantErr: "want e.g."},
	} {
		got, err := ParseTarget(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTarget(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	got, err := ParseHeaders([]string{"x-user: alice", "X-User:bob", "Host: echo.demo:8080", "x-empty:"})
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"X-User": {"alice", "bob"}, "Host": {"echo.demo:8080"}, "X-Empty": {""}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHeaders = %v, want %v", got, want)
	}
	for _, bad := range []string{"novalue", ": v", "k=v"} {
		if _, err := ParseHeaders([]string{bad}); err == nil {
			t.Errorf("ParseHeaders(%q) succeeded, want error", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	ds := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	ten := ds(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ds(7), 50, 7 * time.Millisecond},
		{ds(7), 99, 7 * time.Millisecond},
		{ten, 50, 5 * time.Millisecond},
		{ten, 90, 9 * time.Millisecond},
		{ten, 99, 10 * time.Millisecond},
		{ten, 100, 10 * time.Millisecond},
		{ten, 0, 1 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	errA, errB := errors.New("connection refused"), errors.New("reset")
	outs := []outcome{
		{responded: true, ok: true, code: "200", pod: "a", version: "v1", latency: 1 * time.Millisecond},
		{responded: true, ok: true, code: "200", pod: "b", version: "v2", latency: 3 * time.Millisecond, seen: map[string]string{"X-A": "1"}},
		{responded: true, ok: false, code: "503", pod: "a", version: "v1", latency: 2 * time.Millisecond, seen: map[string]string{"X-Failed": "1"}},
		{responded: true, ok: false, code: "503", latency: 4 * time.Millisecond}, // from a proxy: no pod
		{err: errA}, {err: errA}, {err: errB},
	}
	got := aggregate("http://x", outs)
	want := Result{
		Target: "http://x", Total: 7, OK: 2, Responses: 4, Errors: 3,
		ByResponder:  map[string]int{"a": 2, "b": 1},
		ByVersion:    map[string]int{"v1": 2, "v2": 1},
		ByCode:       map[string]int{"200": 2, "503": 2},
		ErrorSamples: []string{"connection refused", "reset"},
		LatencyMs:    Latency{P50: 2, P90: 4, P99: 4, Max: 4},
		SeenHeaders:  map[string]string{"X-A": "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("aggregate =\n%+v\nwant\n%+v", got, want)
	}
	many := make([]outcome, 0, 10)
	for i := range 10 {
		many = append(many, outcome{err: errors.New(strings.Repeat("e", i+1))})
	}
	if got := aggregate("t", many); len(got.ErrorSamples) != MaxErrorSamples || got.Errors != 10 {
		t.Errorf("10 distinct errors: %d samples, %d errors; want %d, 10", len(got.ErrorSamples), got.Errors, MaxErrorSamples)
	}
	empty := aggregate("t", nil)
	if empty.ErrorSamples == nil || empty.ByCode == nil || empty.ByResponder == nil {
		t.Errorf("empty result has nil collections (would print null): %+v", empty)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		r           Result
		allowErrors bool
		want        int
	}{
		{Result{Total: 3, Responses: 3, OK: 3}, false, 0},
		{Result{Total: 3, Responses: 3, OK: 0}, false, 0}, // 503s are responses
		{Result{Total: 3, Responses: 2, Errors: 1}, false, 1},
		{Result{Total: 3, Responses: 2, Errors: 1}, true, 0},
		{Result{Total: 0}, false, 0},
	} {
		if got := tc.r.ExitCode(tc.allowErrors); got != tc.want {
			t.Errorf("%+v.ExitCode(%v) = %d, want %d", tc.r, tc.allowErrors, got, tc.want)
		}
	}
}

func TestGRPCOutcome(t *testing.T) {
	withPod := metadata.Pairs("x-echo-pod", "p1", "x-echo-version", "v3")
	for _, tc := range []struct {
		name    string
		err     error
		header  metadata.MD
		trailer metadata.MD
		want    outcome
	}{
		{name: "denied by a proxy", err: status.Error(codes.PermissionDenied, "RBAC"), want: outcome{responded: true, code: "PermissionDenied"}},
		{name: "unavailable from echo", err: status.Error(codes.Unavailable, "fail knob"), trailer: withPod, want: outcome{responded: true, code: "Unavailable", pod: "p1", version: "v3"}},
		{name: "unavailable, no echo metadata", err: status.Error(codes.Unavailable, "connection refused"), want: outcome{err: status.Error(codes.Unavailable, "connection refused")}},
		{name: "deadline", err: status.Error(codes.DeadlineExceeded, "deadline"), want: outcome{err: status.Error(codes.DeadlineExceeded, "deadline")}},
		{name: "code from header", err: status.Error(codes.NotFound, "x"), header: withPod, want: outcome{responded: true, code: "NotFound", pod: "p1", version: "v3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := grpcOutcome(nil, tc.err, tc.header, tc.trailer)
			if got.responded != tc.want.responded || got.code != tc.want.code || got.pod != tc.want.pod || got.version != tc.want.version || (got.err == nil) != (tc.want.err == nil) {
				t.Errorf("grpcOutcome = %+v, want %+v", got, tc.want)
			}
		})
	}
}
