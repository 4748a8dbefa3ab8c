//lint:file-ignore SA1019 interop tests run against x/net's HTTP/2 client and server on purpose; they are deprecated in favour of net/http, which is not what we test against.

package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// xnetClient opens an x/net HTTP/2 client connection to the env's server, as
// a third-party HBONE client would.
func xnetClient(t *testing.T, e *env) *http2.ClientConn {
	t.Helper()
	cert, _ := e.certs.ClientCertificate(context.Background(), e.src)
	tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestBadRequestsGet400(t *testing.T) {
	called := false
	e := newEnv(t, acceptHandler(func(*Request, *Stream) { called = true }))
	cc := xnetClient(t, e)
	tests := []struct {
		name, method, url, host string
	}{
		{"GET", "GET", "https://10.0.0.1:80/", ""},
		{"POST", "POST", "https://10.0.0.1:80/x", ""},
		{"host name authority", "CONNECT", "https://example.com:80", "example.com:80"},
		{"no port", "CONNECT", "https://10.0.0.1", "10.0.0.1"},
		{"port 0", "CONNECT", "https://10.0.0.1:0", "10.0.0.1:0"},
		{"unbracketed IPv6", "CONNECT", "https://x", "fd00::1:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := cc.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	if called {
		t.Fatal("handler called for a bad request")
	}
}

// TestXNetClientInterop checks our server against golang.org/x/net's HTTP/2
// client, an independent implementation.
func TestXNetClientInterop(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		io.Copy(s, s)
	}))
	cc := xnetClient(t, e)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("CONNECT", "https://10.0.0.1:80", pr)
	req.Host = "10.0.0.1:80"
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	go func() {
		pw.Write([]byte("hello over x/net"))
		pw.Close()
	}()
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != "hello over x/net" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestXNetServerInterop checks our client against golang.org/x/net's
// HTTP/2 server.
func TestXNetServerInterop(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	peer := xnetServer(t, e, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "CONNECT" || r.Host != "10.0.0.7:9" {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
			if err != nil {
				return
			}
		}
	})
	req := e.req("10.0.0.7:9")
	req.Peer = peer
	s, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello from our client"))
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello from our client" {
		t.Fatalf("echo %q, %v", got, err)
	}
	s.Close()
	e.cl.Close()
}

// xnetServer serves h with golang.org/x/net's HTTP/2 server over TLS with
// the env's server identity, until the test ends, and returns its address.
func xnetServer(t *testing.T, e *env, h http.HandlerFunc) netip.AddrPort {
	t.Helper()
	srvCert := e.ca.MustIssue(t, e.dst, time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns { // ServeConn returns when its connection closes
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			if closed {
				c.Close()
			}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*srvCert}, NextProtos: []string{"h2"}, ClientAuth: tls.RequireAnyClientCert})
				if tc.Handshake() != nil {
					c.Close()
					return
				}
				(&http2.Server{}).ServeConn(tc, &http2.ServeConnOpts{Handler: h})
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestHTTP1ClientRefused(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	cert, _ := e.certs.ClientCertificate(context.Background(), e.src)
	for name, alpn := range map[string][]string{"ALPN http/1.1": {"http/1.1"}, "no ALPN": nil} {
		t.Run(name, func(t *testing.T) {
			// Go's TLS server lets an http/1.1-only client finish the
			// handshake without ALPN; the HBONE server then hangs up.
			tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{
				InsecureSkipVerify: true, NextProtos: alpn, Certificates: []tls.Certificate{*cert},
			})
			if err != nil {
				return // refused in the handshake: fine
			}
			defer tc.Close()
			if p := tc.ConnectionState().NegotiatedProtocol; p != "" {
				t.Fatalf("negotiated ALPN %q", p)
			}
			tc.Write([]byte("CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n"))
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := tc.Read(make([]byte, 100))
			var ne net.Error
			if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("HTTP/1.1 client got %d bytes, err %v; want the connection closed", n, err)
			}
		})
	}
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		return
	}
	defer tc.Close()
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read after handshake without a client certificate: %v, want a TLS alert", err)
	}
}
