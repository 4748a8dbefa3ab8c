package hbone

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// env is a server and a client on loopback with certificates from one CA.
type env struct {
	ca       *hbonetest.CA
	certs    *hbonetest.Certs
	src, dst spiffe.Identity
	srv      *Server
	ln       *trackingListener
	peer     netip.AddrPort
	cl       *Client
	dials    *countingDialer
}

type envOpt func(*ServerConfig, *ClientConfig)

func newEnv(tb testing.TB, h Handler, opts ...envOpt) *env {
	tb.Helper()
	e := &env{ca: hbonetest.MustCA(tb, "cluster.local"), certs: &hbonetest.Certs{}}
	e.src = e.ca.Identity("default", "client")
	e.dst = e.ca.Identity("default", "server")
	e.certs.Set(e.src, e.ca.MustIssue(tb, e.src, time.Hour))
	srvCert := e.ca.MustIssue(tb, e.dst, time.Hour)
	scfg := ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return srvCert, nil },
		Bundle:         e.ca.Bundle,
		Handler:        h,
	}
	e.dials = &countingDialer{}
	ccfg := ClientConfig{Certs: e.certs, Bundle: e.ca.Bundle, DialContext: e.dials.DialContext}
	for _, o := range opts {
		o(&scfg, &ccfg)
	}
	var err error
	if e.srv, err = NewServer(scfg); err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.ln = &trackingListener{Listener: l}
	e.peer = l.Addr().(*net.TCPAddr).AddrPort()
	served := make(chan struct{})
	go func() { defer close(served); e.srv.Serve(e.ln) }()
	if e.cl, err = NewClient(ccfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.cl.Close()
		e.srv.Close()
		<-served
	})
	return e
}

func (e *env) req(authority string) DialRequest {
	return DialRequest{
		Source: e.src,
		Peer:   e.peer,
		Target: Target{Authority: netip.MustParseAddrPort(authority)},
	}
}

func (e *env) dial(tb testing.TB, authority string) *Stream {
	tb.Helper()
	s, err := e.cl.Dial(context.Background(), e.req(authority))
	if err != nil {
		tb.Fatalf("Dial(%s): %v", authority, err)
	}
	return s
}

// trackingListener remembers accepted connections so a test can kill them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

type countingDialer struct {
	mu sync.Mutex
	n  int
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *countingDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// eventually polls cond until it holds or a generous deadline passes (a
// liveness check, not a speed assertion).
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// acceptHandler accepts every stream and runs f on it.
func acceptHandler(f func(r *Request, s *Stream)) Handler {
	return HandlerFunc(func(_ context.Context, r *Request) {
		s, err := r.Accept()
		if err != nil {
			return
		}
		f(r, s)
	})
}
