package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/server"
)

type echoAddrs struct{ tcp, http, grpc, tls string }

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startEcho runs a real echo server on loopback for the test.
func startEcho(t *testing.T, pod, version string) echoAddrs {
	t.Helper()
	ls := server.Listeners{TCP: []net.Listener{listen(t)}, HTTP: []net.Listener{listen(t)}, GRPC: []net.Listener{listen(t)}, TLS: []net.Listener{listen(t)}}
	a := echoAddrs{ls.TCP[0].Addr().String(), ls.HTTP[0].Addr().String(), ls.GRPC[0].Addr().String(), ls.TLS[0].Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	id := api.Identity{Pod: pod, Namespace: "test", Version: version}
	go func() { done <- server.Run(ctx, server.Config{Identity: id, Logger: zaptest.NewLogger(t)}, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server %s: %v", pod, err)
		}
	})
	return a
}

// roundRobin is a loopback TCP proxy sending each new connection to the
// next backend, like a service VIP in front of two pods.
func roundRobin(t *testing.T, backends ...string) string {
	t.Helper()
	l := listen(t)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", backends[i%len(backends)])
				if err != nil {
					return
				}
				defer u.Close()
				var pipe sync.WaitGroup
				pipe.Add(1)
				go func() {
					defer pipe.Done()
					_, _ = io.Copy(u, c)
					_ = u.(*net.TCPConn).CloseWrite()
				}()
				_, _ = io.Copy(c, u)
				_ = c.(*net.TCPConn).CloseWrite()
				pipe.Wait()
			}()
		}
	}()
	return l.Addr().String()
}

func TestRunAggregatesTwoResponders(t *testing.T) {
	a := startEcho(t, "echo-a", "v1")
	b := startEcho(t, "echo-b", "v2")
	for _, tc := range []struct {
		scheme string
		addr   func(echoAddrs) string
		path   string
		code   string
	}{
		{scheme: "tcp", addr: func(e echoAddrs) string { return e.tcp }},
		{scheme: "http", addr: func(e echoAddrs) string { return e.http }, path: "/x", code: "200"},
		{scheme: "h2c", addr: func(e echoAddrs) string { return e.http }, path: "/x", code: "200"},
		{scheme: "https", addr: func(e echoAddrs) string { return e.tls }, path: "/x", code: "200"},
		{scheme: "grpc", addr: func(e echoAddrs) string { return e.grpc }, code: "OK"},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			vip := roundRobin(t, tc.addr(a), tc.addr(b))
			target := tc.scheme + "://" + vip + tc.path
			r, err := Run(context.Background(), Options{Target: target, Count: 6, Concurrency: 2, NewConn: true, BodySize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if r.Total != 6 || r.OK != 6 || r.Responses != 6 || r.Errors != 0 {
				t.Fatalf("result %+v, want 6 ok", r)
			}
			if r.ByResponder["echo-a"] != 3 || r.ByResponder["echo-b"] != 3 || len(r.ByResponder) != 2 {
				t.Errorf("byResponder = %v, want echo-a:3 echo-b:3", r.ByResponder)
			}
			if r.ByVersion["v1"] != 3 || r.ByVersion["v2"] != 3 {
				t.Errorf("byVersion = %v, want v1:3 v2:3", r.ByVersion)
			}
			if tc.code != "" && r.ByCode[tc.code] != 6 {
				t.Errorf("byCode = %v, want %s:6", r.ByCode, tc.code)
			}
			if r.Target != target || r.LatencyMs.Max <= 0 || r.LatencyMs.P50 > r.LatencyMs.Max {
				t.Errorf("target %q latency %+v", r.Target, r.LatencyMs)
			}
			if r.ExitCode(false) != 0 {
				t.Errorf("exit code %d, want 0", r.ExitCode(false))
			}
		})
	}
}

func TestRunKeepAliveSticksToOneBackend(t *testing.T) {
	a := startEcho(t, "echo-a", "v1")
	b := startEcho(t, "echo-b", "v2")
	vip := roundRobin(t, a.http, b.http)
	r, err := Run(context.Background(), Options{Target: "http://" + vip + "/", Count: 5, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 5 || len(r.ByResponder) != 1 {
		t.Errorf("keep-alive result %+v, want 5 answers from one pod (one connection)", r)
	}
}

func TestRunCountsCodesAndHeaders(t *testing.T) {
	a := startEcho(t, "echo-a", "v1")
	hs, err := ParseHeaders([]string{"x-echo-status: 503"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), Options{Target: "http://" + a.http + "/", Count: 4, Concurrency: 4, QPS: 1000, Headers: hs, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Responses != 4 || r.OK != 0 || r.ByCode["503"] != 4 || r.ByResponder["echo-a"] != 4 {
		t.Errorf("result %+v, want 4 responses, all 503 from echo-a", r)
	}
	if r.ExitCode(false) != 0 {
		t.Errorf("exit code %d with only 503s, want 0 (all got a response)", r.ExitCode(false))
	}
	r, err = Run(context.Background(), Options{Target: "grpc://" + a.grpc, Count: 2, Headers: http.Header{"X-Echo-Grpc-Code": {"7"}}, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Responses != 2 || r.ByCode["PermissionDenied"] != 2 || r.ByResponder["echo-a"] != 2 {
		t.Errorf("grpc result %+v, want 2 PermissionDenied from echo-a", r)
	}
}

func TestRunClosedPortFails(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	l.Close()
	for _, scheme := range []string{"tcp", "http", "h2c", "grpc"} {
		t.Run(scheme, func(t *testing.T) {
			r, err := Run(context.Background(), Options{Target: scheme + "://" + addr, Count: 3, Concurrency: 2, KeepAlive: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 3 || r.Responses != 0 || r.OK != 0 {
				t.Errorf("result %+v, want 3 errors", r)
			}
			if len(r.ErrorSamples) == 0 || !strings.Contains(strings.Join(r.ErrorSamples, " "), "refused") {
				t.Errorf("errorSamples = %q, want connection refused", r.ErrorSamples)
			}
			if r.ExitCode(false) != 1 || r.ExitCode(true) != 0 {
				t.Errorf("exit codes %d/%d, want 1 (0 with allow-errors)", r.ExitCode(false), r.ExitCode(true))
			}
		})
	}
}

// TestRunGRPCStream: each request is one EchoStream call of 4 messages;
// the fail-every knob fails every other call, counted per server.
func TestRunGRPCStream(t *testing.T) {
	a := startEcho(t, "echo-a", "v1")
	r, err := Run(context.Background(), Options{Target: "grpc://" + a.grpc, Count: 3, Stream: 4, KeepAlive: true, Headers: http.Header{"X-Test": {"s"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 3 || r.ByCode["OK"] != 3 || r.ByResponder["echo-a"] != 3 {
		t.Errorf("stream result %+v, want 3 ok calls from echo-a", r)
	}
	if r.SeenHeaders["x-test"] != "s" {
		t.Errorf("seenHeaders = %v, want x-test: s (metadata the server saw)", r.SeenHeaders)
	}
	r, err = Run(context.Background(), Options{Target: "grpc://" + a.grpc, Count: 4, Stream: 2, KeepAlive: true, Headers: http.Header{"X-Echo-Fail-Every": {"2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 2 || r.ByCode["Unavailable"] != 2 || r.Responses != 4 {
		t.Errorf("fail-every=2 stream result %+v, want 2 OK and 2 Unavailable", r)
	}
}

// TestRunSeenHeaders: the summary shows the request headers the server saw.
func TestRunSeenHeaders(t *testing.T) {
	a := startEcho(t, "echo-a", "v1")
	r, err := Run(context.Background(), Options{Target: "http://" + a.http + "/", Count: 3, Concurrency: 2, Headers: http.Header{"X-User": {"alice"}}, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.SeenHeaders["X-User"] != "alice" {
		t.Errorf("seenHeaders = %v, want X-User: alice", r.SeenHeaders)
	}
	r, err = Run(context.Background(), Options{Target: "http://" + a.http + "/?status=503"})
	if err != nil {
		t.Fatal(err)
	}
	if r.SeenHeaders != nil {
		t.Errorf("seenHeaders = %v without a successful answer, want none", r.SeenHeaders)
	}
}

func TestRunBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Target: "ftp://x:1"},
		{Target: "http://x:1", QPS: -1},
		{Target: "tcp://x:1", BodySize: -5},
		{Target: "http://x:1", Stream: 2},
		{Target: "grpc://x:1", Stream: -1},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) succeeded, want error", o)
		}
	}
}
