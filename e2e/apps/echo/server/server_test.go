package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

var testID = api.Identity{
	Pod: "echo-v1-abc", Namespace: "demo", ServiceAccount: "echo", Version: "v1",
	Node: "node-1", PodIP: "10.1.0.5", Hostname: "host",
}

// addrs are the loopback addresses of a test server.
type addrs struct {
	tcp, http, grpc, tls string
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return l
}

// startServer runs a server on ephemeral loopback ports until the test
// ends, and checks that it stops cleanly.
func startServer(t *testing.T, cfg Config) addrs {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	ls := Listeners{TCP: []net.Listener{listen(t)}, HTTP: []net.Listener{listen(t)}, GRPC: []net.Listener{listen(t)}, TLS: []net.Listener{listen(t)}}
	a := addrs{tcp: ls.TCP[0].Addr().String(), http: ls.HTTP[0].Addr().String(), grpc: ls.GRPC[0].Addr().String(), tls: ls.TLS[0].Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

func TestTCPGreetingEchoHalfClose(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c, err := net.Dial("tcp", a.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read greeting: %v", err)
	}
	var g api.TCPGreeting
	if err := json.Unmarshal(line, &g); err != nil {
		t.Fatalf("decode greeting %q: %v", line, err)
	}
	if g.Identity != testID {
		t.Errorf("greeting identity = %+v, want %+v", g.Identity, testID)
	}
	if _, port, _ := net.SplitHostPort(a.tcp); g.ServerPort == 0 || !strings.HasSuffix(a.tcp, ":"+port) {
		t.Errorf("greeting serverPort = %d, listener %s", g.ServerPort, a.tcp)
	}
	if g.SourceIP != "127.0.0.1" || g.SourcePort != c.LocalAddr().(*net.TCPAddr).Port {
		t.Errorf("greeting source = %s:%d, want %s", g.SourceIP, g.SourcePort, c.LocalAddr())
	}
	payload := strings.Repeat("hello echo ", 10000)
	// Write concurrently: the payload exceeds socket buffers and the
	// server echoes while we write.
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != payload {
		t.Errorf("echoed %d bytes, want %d identical bytes", len(got), len(payload))
	}
}

func getJSON(t *testing.T, c *http.Client, req *http.Request) (*http.Response, api.HTTPResponse) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	var r api.HTTPResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode body %q: %v", body, err)
	}
	return resp, r
}

func TestHTTP1(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.http+"/some/path?x=1", strings.NewReader("12345"))
	req.Header.Set("X-Test", "one")
	req.Header.Add("X-Test", "two")
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, r := getJSON(t, c, req)
	if resp.StatusCode != 200 || r.Code != 200 {
		t.Errorf("status = %d (body %d), want 200", resp.StatusCode, r.Code)
	}
	if got := resp.Header.Get(api.HeaderPod); got != testID.Pod {
		t.Errorf("%s = %q, want %q", api.HeaderPod, got, testID.Pod)
	}
	if got := resp.Header.Get(api.HeaderVersion); got != testID.Version {
		t.Errorf("%s = %q, want %q", api.HeaderVersion, got, testID.Version)
	}
	if r.Identity != testID {
		t.Errorf("identity = %+v, want %+v", r.Identity, testID)
	}
	if r.Protocol != "HTTP/1.1" || r.Method != "POST" || r.Path != "/some/path" || r.Query != "x=1" || r.Host != a.http {
		t.Errorf("saw %s %s %s?%s host %s", r.Protocol, r.Method, r.Path, r.Query, r.Host)
	}
	if r.Headers["X-Test"] != "one, two" {
		t.Errorf("headers[X-Test] = %q, want %q (all headers: %v)", r.Headers["X-Test"], "one, two", r.Headers)
	}
	if r.BodyBytes != 5 {
		t.Errorf("bodyBytes = %d, want 5", r.BodyBytes)
	}
	if r.SourceIP != "127.0.0.1" || r.SourcePort == 0 {
		t.Errorf("source = %s:%d, want 127.0.0.1:<port>", r.SourceIP, r.SourcePort)
	}
	if want := a.http[strings.LastIndex(a.http, ":")+1:]; r.ServerPort == 0 || !strings.HasSuffix(a.http, ":"+want) {
		t.Errorf("serverPort = %d, listener %s", r.ServerPort, a.http)
	}
	if len(r.TLSPeer) != 0 {
		t.Errorf("tlsPeer = %v on plaintext", r.TLSPeer)
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	tr := &http.Transport{}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: tr}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.http+"/h2", nil)
	req.Header.Set("X-Test", "h2")
	resp, r := getJSON(t, c, req)
	if resp.ProtoMajor != 2 || r.Protocol != "HTTP/2.0" {
		t.Errorf("response proto %s, server saw %q, want HTTP/2.0", resp.Proto, r.Protocol)
	}
	if r.Headers["X-Test"] != "h2" || r.Path != "/h2" || r.Identity != testID {
		t.Errorf("saw headers %v path %q identity %+v", r.Headers, r.Path, r.Identity)
	}
}

func TestHealthz(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	resp, err := http.Get("http://" + a.http + api.HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestHTTPKnobsOnServer(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		name     string
		query    string
		header   http.Header
		wantCode int
	}{
		{name: "status query", query: "status=503", wantCode: 503},
		{name: "status header", header: http.Header{"X-Echo-Status": {"418"}}, wantCode: 418},
		{name: "fail always", query: "fail=1", wantCode: 503},
		{name: "fail never", query: "fail=0&status=201", wantCode: 201},
		{name: "delay", query: "delay=20ms", wantCode: 200},
		{name: "delay header", header: http.Header{"X-Echo-Delay": {"20ms"}}, wantCode: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+a.http+"/?"+tc.query, nil)
			for k, vs := range tc.header {
				req.Header[k] = vs
			}
			start := time.Now()
			resp, r := getJSON(t, c, req)
			if resp.StatusCode != tc.wantCode || r.Code != tc.wantCode {
				t.Errorf("status = %d (body %d), want %d", resp.StatusCode, r.Code, tc.wantCode)
			}
			if resp.Header.Get(api.HeaderPod) != testID.Pod {
				t.Errorf("missing %s on a %d answer", api.HeaderPod, resp.StatusCode)
			}
			// A lower bound only: the server must have slept.
			if strings.Contains(tc.name, "delay") && time.Since(start) < 20*time.Millisecond {
				t.Errorf("answered after %s, before the 20ms delay", time.Since(start))
			}
		})
	}
}

func TestHTTPSizeAndBadKnob(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	resp, err := http.Get("http://" + a.http + "/?size=3000")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 3000 {
		t.Errorf("body is %d bytes, want 3000", len(body))
	}
	var r api.HTTPResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Pod != testID.Pod {
		t.Errorf("padded body does not decode: %v (pod %q)", err, r.Pod)
	}
	resp, err = http.Get("http://" + a.http + "/?delay=forever")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "delay") {
		t.Errorf("bad knob answer = %d %q, want 400 naming the knob", resp.StatusCode, body)
	}
}

func TestHandlerKnobsInjected(t *testing.T) {
	for _, tc := range []struct {
		name      string
		query     string
		draw      float64
		wantCode  int
		wantSleep time.Duration
	}{
		{name: "fail drawn below p", query: "fail=0.5", draw: 0.2, wantCode: 503},
		{name: "fail drawn above p", query: "fail=0.5", draw: 0.7, wantCode: 200},
		{name: "fail wins over status", query: "fail=0.5&status=201", draw: 0.1, wantCode: 503},
		{name: "delay slept", query: "delay=2s", draw: 0.9, wantCode: 200, wantSleep: 2 * time.Second},
		{name: "fail every: first request fails", query: "fail-every=2", draw: 0.9, wantCode: 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(testID, zaptest.NewLogger(t), new(atomic.Uint64))
			var slept time.Duration
			h.sleep = func(_ context.Context, d time.Duration) error { slept += d; return nil }
			h.rand = func() float64 { return tc.draw }
			rec := &recorder{header: http.Header{}}
			req := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: tc.query}, Header: http.Header{}, Body: http.NoBody, Proto: "HTTP/1.1", RemoteAddr: "10.0.0.1:1234"}
			h.ServeHTTP(rec, req.WithContext(context.Background()))
			if rec.code != tc.wantCode {
				t.Errorf("code = %d, want %d", rec.code, tc.wantCode)
			}
			if slept != tc.wantSleep {
				t.Errorf("slept %s, want %s", slept, tc.wantSleep)
			}
		})
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(c int)   { r.code = c }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}

func TestEncodePadded(t *testing.T) {
	base, err := encodePadded(api.HTTPResponse{Identity: testID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 10, len(base), len(base) + 1, 5000} {
		b, err := encodePadded(api.HTTPResponse{Identity: testID}, size)
		if err != nil {
			t.Fatal(err)
		}
		want := max(size, len(base))
		if len(b) != want {
			t.Errorf("size %d: body %d bytes, want %d", size, len(b), want)
		}
	}
}

func selfSignedClientCert(t *testing.T, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSPeerAndALPN(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	const spiffeID = "spiffe://cluster.local/ns/demo/sa/client"
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // the server's certificate is self-signed
		Certificates:       []tls.Certificate{selfSignedClientCert(t, spiffeID)},
	}, ForceAttemptHTTP2: true}
	c := &http.Client{Transport: tr}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+a.tls+"/secure", nil)
	resp, r := getJSON(t, c, req)
	if resp.ProtoMajor != 2 || r.Protocol != "HTTP/2.0" {
		t.Errorf("proto = %s / %s, want HTTP/2.0 via ALPN", resp.Proto, r.Protocol)
	}
	if len(r.TLSPeer) != 1 || r.TLSPeer[0] != spiffeID {
		t.Errorf("tlsPeer = %v, want [%s]", r.TLSPeer, spiffeID)
	}
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCUnary(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c := api.NewEchoClient(dialGRPC(t, a.grpc))
	in, _ := structpb.NewStruct(map[string]any{"message": "hi", "n": 3.0})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-test", "grpc")
	var header metadata.MD
	out, err := c.Echo(ctx, in, grpc.Header(&header))
	if err != nil {
		t.Fatalf("Echo: %v", err)
	}
	r, err := api.DecodeGRPCResponse(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity != testID {
		t.Errorf("identity = %+v, want %+v", r.Identity, testID)
	}
	if r.Method != api.GRPCMethodEcho || r.Protocol != "gRPC" || r.Authority != a.grpc {
		t.Errorf("method %q protocol %q authority %q", r.Method, r.Protocol, r.Authority)
	}
	if r.Metadata["x-test"] != "grpc" {
		t.Errorf("metadata = %v, want x-test: grpc", r.Metadata)
	}
	if r.Request["message"] != "hi" || r.Request["n"] != 3.0 {
		t.Errorf("request = %v, want the message sent", r.Request)
	}
	if r.SourceIP != "127.0.0.1" || r.SourcePort == 0 || r.ServerPort == 0 {
		t.Errorf("source %s:%d server port %d", r.SourceIP, r.SourcePort, r.ServerPort)
	}
	if got := header.Get("x-echo-pod"); len(got) != 1 || got[0] != testID.Pod {
		t.Errorf("header x-echo-pod = %v, want %s", got, testID.Pod)
	}
}

func TestGRPCKnobCode(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c := api.NewEchoClient(dialGRPC(t, a.grpc))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-echo-grpc-code", "7")
	var trailer metadata.MD
	_, err := c.Echo(ctx, &structpb.Struct{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Echo error = %v, want PermissionDenied", err)
	}
	if got := trailer.Get("x-echo-pod"); len(got) != 1 || got[0] != testID.Pod {
		t.Errorf("trailer x-echo-pod = %v, want %s", got, testID.Pod)
	}
	ctx = metadata.AppendToOutgoingContext(context.Background(), "x-echo-fail", "1")
	if _, err := c.Echo(ctx, &structpb.Struct{}); status.Code(err) != codes.Unavailable {
		t.Errorf("fail=1 error = %v, want Unavailable", err)
	}
	ctx = metadata.AppendToOutgoingContext(context.Background(), "x-echo-delay", "bogus")
	if _, err := c.Echo(ctx, &structpb.Struct{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad knob error = %v, want InvalidArgument", err)
	}
}

// TestFailEverySharedCount: fail-every=2 fails exactly every other request,
// counted per server across HTTP and gRPC; requests without it do not count.
func TestFailEverySharedCount(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	get := func(query string) int {
		t.Helper()
		resp, err := c.Get("http://" + a.http + "/?" + query)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	g := api.NewEchoClient(dialGRPC(t, a.grpc))
	grpcCode := func() codes.Code {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-echo-fail-every", "2")
		_, err := g.Echo(ctx, &structpb.Struct{})
		return status.Code(err)
	}
	var got []string
	got = append(got, fmt.Sprint(get("fail-every=2"))) // 1st: fails
	got = append(got, fmt.Sprint(get("")))             // not counted
	got = append(got, fmt.Sprint(get("fail-every=2"))) // 2nd
	got = append(got, grpcCode().String())             // 3rd: fails
	got = append(got, grpcCode().String())             // 4th
	got = append(got, fmt.Sprint(get("fail-every=2"))) // 5th: fails
	want := []string{"503", "200", "200", "Unavailable", "OK", "503"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("answers = %v, want %v", got, want)
	}
}

func TestGRPCStream(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c := api.NewEchoClient(dialGRPC(t, a.grpc))
	s, err := c.EchoStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		in, _ := structpb.NewStruct(map[string]any{"i": float64(i)})
		if err := s.Send(in); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		out, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		r, err := api.DecodeGRPCResponse(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != i || r.Request["i"] != float64(i) || r.Pod != testID.Pod || r.Method != api.GRPCMethodEchoStream {
			t.Errorf("answer %d = seq %d request %v pod %q method %q", i, r.Seq, r.Request, r.Pod, r.Method)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after CloseSend = %v, want EOF", err)
	}
}

func TestGRPCHealth(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	hc := healthpb.NewHealthClient(dialGRPC(t, a.grpc))
	for _, svc := range []string{"", api.GRPCService} {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Check(%q): %v", svc, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, resp.Status)
		}
	}
}

func TestShutdownDrainsOpenTCPConnection(t *testing.T) {
	l := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Identity: testID, Logger: zaptest.NewLogger(t), DrainTimeout: time.Minute}, Listeners{TCP: []net.Listener{l}})
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := br.ReadBytes('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	cancel()
	// The open connection keeps working while the server drains.
	if _, err := io.WriteString(c, "after-cancel"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "after-cancel" {
		t.Errorf("echo while draining = %q, %v; want after-cancel", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Errorf("listener still accepts after Run returned")
	}
}

func TestShutdownClosesAfterDrainTimeout(t *testing.T) {
	l := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Identity: testID, Logger: zaptest.NewLogger(t), DrainTimeout: 10 * time.Millisecond}, Listeners{TCP: []net.Listener{l}})
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if _, err := br.ReadBytes('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	// The server closed the idle connection when the drain ran out.
	if b, err := io.ReadAll(br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") || len(b) != 0 {
		t.Errorf("after drain: read %q, %v; want EOF or reset", b, err)
	}
}
