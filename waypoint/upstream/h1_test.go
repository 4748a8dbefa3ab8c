package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestH1Direct(t *testing.T) {
	body := io.NopCloser(strings.NewReader("x"))
	for _, c := range []struct {
		method string
		body   io.ReadCloser
		length int64
		want   bool
	}{
		{"GET", nil, 0, true},
		{"", http.NoBody, 0, true},
		{"HEAD", nil, 0, true},
		{"OPTIONS", nil, 0, true},
		{"TRACE", nil, 0, true},
		{"GET", body, 1, false},   // a body goes through http.Transport
		{"GET", nil, 5, false},    // announced body
		{"POST", nil, 0, false},   // not replayable
		{"DELETE", nil, 0, false}, // http.Transport does not replay it either
	} {
		req := &http.Request{Method: c.method, Body: c.body, ContentLength: c.length}
		if got := h1Direct(req); got != c.want {
			t.Errorf("h1Direct(%s, body %v, length %d) = %v, want %v", c.method, c.body != nil, c.length, got, c.want)
		}
	}
}

// h1Backend is a plain HTTP/1.1 server on loopback counting accepted
// connections.
type h1Backend struct {
	addr  string
	conns atomic.Int64
}

func newH1Backend(t *testing.T, h http.HandlerFunc) *h1Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &h1Backend{addr: ln.Addr().String()}
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *h1Backend) pool(t *testing.T, idle time.Duration) *h1Pool {
	p := newH1Pool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", b.addr)
	}, 4, idle)
	t.Cleanup(p.Close)
	return p
}

func h1Get(t *testing.T, ctx context.Context, p *h1Pool, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://backend"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.RoundTrip(req)
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestH1PoolReusesAndReleases(t *testing.T) {
	b := newH1Backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "chunked")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
			return
		}
		io.WriteString(w, "hello "+r.URL.Path)
	})
	p := b.pool(t, time.Minute)
	ctx := t.Context()
	for i := range 5 {
		res, err := h1Get(t, ctx, p, "/a")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, res); got != "hello /a" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests read to the end, want 1", n)
	}

	res, err := h1Get(t, ctx, p, "/empty") // no body: released at once
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("204: %v %v", res, err)
	}
	res, err = h1Get(t, ctx, p, "/trailer")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, res); got != "chunked" || res.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("chunked answer %q, trailer %v", got, res.Trailer)
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("%d connections after a 204 and a chunked answer, want 1", n)
	}

	// An answer closed before its end, or marked Connection: close, takes
	// its connection with it.
	res, err = h1Get(t, ctx, p, "/a")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, err := res.Body.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Errorf("read after close: %v", err)
	}
	res, err = h1Get(t, ctx, p, "/close")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	res, err = h1Get(t, ctx, p, "/a")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if n := b.conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (one after the early close, one after Connection: close)", n)
	}
}

func TestH1PoolRetriesConnectionClosedWhileIdle(t *testing.T) {
	var conns atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Each connection answers one request (keep-alive announced), then
	// closes: the next request on it fails before any answer.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	p := newH1Pool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, 4, time.Minute)
	t.Cleanup(p.Close)
	for i := range 3 {
		res, err := h1Get(t, t.Context(), p, "/")
		if err != nil {
			t.Fatalf("request %d: %v (a reused connection the backend closed must be retried)", i, err)
		}
		if got := readAll(t, res); got != "ok" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestH1PoolCancel(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	b := newH1Backend(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		if r.URL.Path == "/hang" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	p := b.pool(t, time.Minute)

	// Cancelled while waiting for the answer's head.
	ctx, cancel := context.WithCancelCause(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := h1Get(t, ctx, p, "/wait")
		errc <- err
	}()
	cause := errors.New("per-try timeout")
	<-arrived
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("cancelled before the answer: %v, want the context's cause", err)
	}

	// Cancelled while reading the body.
	ctx, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	res, err := h1Get(t, ctx, p, "/hang")
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("body read past the deadline: %v, want context.DeadlineExceeded", err)
	}
	p.mu.Lock()
	idle := len(p.idle)
	p.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d idle connections after interrupted requests, want 0", idle)
	}
}

func TestH1PoolIdleTimeoutAndClose(t *testing.T) {
	b := newH1Backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })
	p := b.pool(t, time.Millisecond)
	for range 2 {
		res, err := h1Get(t, t.Context(), p, "/")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		time.Sleep(5 * time.Millisecond) // past the idle timeout
	}
	if n := b.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the idle one expired)", n)
	}
	p.Close()
	if _, err := h1Get(t, t.Context(), p, "/"); err == nil {
		t.Error("request after CloseIdleConnections succeeded, want refused")
	}
}

func TestValidHeaders(t *testing.T) {
	if err := validHeaders(http.Header{"X-Ok": {"fine"}}); err != nil {
		t.Errorf("valid header refused: %v", err)
	}
	if err := validHeaders(http.Header{"X-Bad": {"a\r\nInjected: 1"}}); err == nil {
		t.Error("CRLF in a header value accepted")
	}
	if err := validHeaders(http.Header{"Bad Name": {"v"}}); err == nil {
		t.Error("space in a header name accepted")
	}
}

// TestH1PoolRetriesOnFreshConnection: every idle connection to the backend
// died (it restarted); the request is still answered, on a new connection,
// not retried on another dead idle one.
func TestH1PoolRetriesOnFreshConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	const first = 3
	var mu sync.Mutex
	var open []net.Conn
	barrier := make(chan struct{})
	kill := make(chan struct{})
	accepted := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			n := accepted
			open = append(open, c)
			if n == first {
				close(barrier)
			}
			mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if n <= first {
						<-barrier // answer the first ones only once all are open
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					if n <= first {
						<-kill
						return // the backend "restarts": its old connections close
					}
				}
			}()
		}
	}()
	p := newH1Pool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, 8, time.Minute)
	t.Cleanup(p.Close)
	var wg sync.WaitGroup
	for range first {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://backend/", nil)
			res, err := p.RoundTrip(req)
			if err != nil {
				t.Errorf("warm-up request: %v", err)
				return
			}
			io.ReadAll(res.Body)
			res.Body.Close()
		})
	}
	wg.Wait()
	close(kill)
	time.Sleep(50 * time.Millisecond) // let the closes reach the client (not needed for correctness)
	res, err := h1Get(t, t.Context(), p, "/")
	if err != nil {
		t.Fatalf("after the backend dropped every idle connection: %v", err)
	}
	if got := readAll(t, res); got != "ok" {
		t.Fatalf("got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted != first+1 {
		t.Errorf("%d connections, want %d (the retry dials once)", accepted, first+1)
	}
}
