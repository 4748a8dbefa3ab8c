package listener_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The waypoint serves HTTP/1.1 tunnels on its own lean path (not
// net/http's server); these tests speak raw HTTP/1.1 on a tunnel and
// check the framing net/http would give.

// h1EchoBackend answers with the request body, streams (flushes) when the
// path is /stream, and sets a trailer there.
func h1EchoBackend() backend {
	return httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/stream" {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Write(b)
	}))
}

// rawTunnel opens a tunnel to reviews-v1 through the waypoint.
func rawTunnel(t *testing.T, e *env) (net.Conn, *bufio.Reader) {
	t.Helper()
	s, err := e.dial(t.Context(), sleepID, "10.96.0.21:9080")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetDeadline(time.Now().Add(20 * time.Second))
	return s, bufio.NewReader(s)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": h1EchoBackend()})
	s, br := rawTunnel(t, e)
	// Three requests written at once: answered in order on one tunnel.
	io.WriteString(s, "POST /a HTTP/1.1\r\nHost: reviews-v1\r\nContent-Length: 3\r\n\r\none"+
		"HEAD /b HTTP/1.1\r\nHost: reviews-v1\r\n\r\n"+
		"POST /c HTTP/1.1\r\nHost: reviews-v1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n")
	for i, want := range []struct{ method, body string }{{"POST", "one"}, {"HEAD", ""}, {"POST", "two"}} {
		res, body := readResponse(t, br, want.method)
		if res.StatusCode != 200 || body != want.body || res.Header.Get("X-Method") != want.method || res.Close {
			t.Errorf("answer %d: %d %q %v close=%v, want 200 %q", i, res.StatusCode, body, res.Header, res.Close, want.body)
		}
		if res.Header.Get("Date") == "" {
			t.Errorf("answer %d: no Date header", i)
		}
	}
}

func TestH1StreamingWithTrailers(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": h1EchoBackend()})
	s, br := rawTunnel(t, e)
	io.WriteString(s, "GET /stream HTTP/1.1\r\nHost: reviews-v1\r\nTE: trailers\r\n\r\n")
	res, body := readResponse(t, br, "GET")
	if res.StatusCode != 200 || body != "part1,part2" {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", res.TransferEncoding)
	}
	if got := res.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("trailer X-Sum = %q (trailers %v)", got, res.Trailer)
	}
}

func TestH1ExpectContinue(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": h1EchoBackend()})
	s, br := rawTunnel(t, e)
	io.WriteString(s, "PUT /x HTTP/1.1\r\nHost: reviews-v1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("interim answer %q, %v; want 100 Continue", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue is followed by %q", blank)
	}
	io.WriteString(s, "body")
	res, body := readResponse(t, br, "PUT")
	if res.StatusCode != 200 || body != "body" {
		t.Errorf("%d %q", res.StatusCode, body)
	}
}

func TestH1HTTP10ClosesAfterAnswer(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": h1EchoBackend()})
	s, br := rawTunnel(t, e)
	io.WriteString(s, "GET /x HTTP/1.0\r\nHost: reviews-v1\r\n\r\n")
	res, _ := readResponse(t, br, "GET")
	if res.StatusCode != 200 || !res.Close {
		t.Errorf("%d close=%v, want 200 and Connection: close", res.StatusCode, res.Close)
	}
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("byte %q after the answer, want the end of the tunnel", n)
	}
}

func TestH1RefusedRequests(t *testing.T) {
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": h1EchoBackend()})
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"bad request line", "GET /\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", 431},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
		{"HTTP/2 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, br := rawTunnel(t, e)
			go io.WriteString(s, tc.req)
			res, _ := readResponse(t, br, "GET")
			if res.StatusCode != tc.code || !res.Close {
				t.Errorf("%d close=%v, want %d and Connection: close", res.StatusCode, res.Close, tc.code)
			}
		})
	}
}

// A client that leaves during a slow request cancels the upstream request
// (the lean path watches the tunnel once a request runs long).
func TestH1ClientGoneCancelsUpstream(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan struct{})
	slow := httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(15 * time.Second):
		}
	}))
	e := newEnv(t, "weights", map[string]backend{"10.244.1.11": slow})
	s, _ := rawTunnel(t, e)
	io.WriteString(s, "GET /slow HTTP/1.1\r\nHost: reviews-v1\r\n\r\n")
	<-entered
	s.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request went on after the client left")
	}
}
