package hbone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	istiohbone "istio.io/istio/pkg/hbone"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Istio's own Go HBONE code (istio.io/istio/pkg/hbone, used by Istio's echo
// test apps) as a wire peer of ours, both ways round: its Dialer (x/net's
// http2.Transport, a CONNECT request with an io.Pipe body) against our
// Server, and its Server (net/http with x/net's HTTP/2) against our Client.

// istioTLS is a client or server tls.Config for Istio's side holding cert,
// verifying the peer as a SPIFFE identity of bundle equal to want, as
// ztunnel does (the certificates carry only a URI SAN, so name checks are
// off and the chain is checked here).
func istioTLS(cert *tls.Certificate, bundle spiffe.Bundle, want spiffe.Identity) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{*cert},
		NextProtos:         []string{"h2"},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain and identity are checked below
		ClientAuth:         tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, err := bundle.VerifyRaw(raw)
			if err != nil {
				return err
			}
			if got != want {
				return errors.New("peer is " + got.String() + ", want " + want.String())
			}
			return nil
		},
	}
}

// TestIstioDialerToOurServer: Istio's HBONE dialer opens a tunnel through
// our server; the server sees the target authority and the dialer's SPIFFE
// identity, and bytes flow both ways.
func TestIstioDialerToOurServer(t *testing.T) {
	type seen struct {
		authority string
		peer      spiffe.Identity
	}
	got := make(chan seen, 1)
	e := newEnv(t, acceptHandler(func(r *Request, s *Stream) {
		got <- seen{r.Authority.String(), r.Peer}
		io.Copy(s, s)
		s.CloseWrite()
	}))
	cert, err := e.certs.ClientCertificate(context.Background(), e.src)
	if err != nil {
		t.Fatal(err)
	}
	timeout := 5 * time.Second
	d := istiohbone.NewDialer(istiohbone.Config{
		ProxyAddress: e.peer.String(),
		TLS:          istioTLS(cert, e.ca.Bundle(), e.dst),
		Timeout:      &timeout,
	})
	c, err := d.Dial("tcp", "10.0.0.9:8080")
	if err != nil {
		t.Fatalf("Istio dialer through our server: %v", err)
	}
	defer c.Close()
	select {
	case s := <-got:
		if s.authority != "10.0.0.9:8080" {
			t.Errorf("server saw authority %q, want 10.0.0.9:8080", s.authority)
		}
		if s.peer != e.src {
			t.Errorf("server saw peer %v, want %v", s.peer, e.src)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("our server's handler was not called")
	}
	// Several round trips on one tunnel, the last one larger than a frame.
	for _, msg := range []string{"hello from istio", "second", string(make([]byte, 100<<10))} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read echo of %d bytes: %v", len(msg), err)
		}
		if string(buf) != msg {
			t.Fatalf("echo differs for a %d-byte message", len(msg))
		}
	}
}

// TestIstioDialerRejected: our server refuses a dialer whose certificate
// is not from the mesh's CA, and Istio's dialer reports the failure.
func TestIstioDialerRejected(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) { t.Error("handler called for an untrusted client") }))
	other := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	foreign, err := other.certs.ClientCertificate(context.Background(), other.src)
	if err != nil {
		t.Fatal(err)
	}
	timeout := 5 * time.Second
	d := istiohbone.NewDialer(istiohbone.Config{
		ProxyAddress: e.peer.String(),
		TLS:          istioTLS(foreign, e.ca.Bundle(), e.dst),
		Timeout:      &timeout,
	})
	if c, err := d.Dial("tcp", "10.0.0.9:8080"); err == nil {
		c.Close()
		t.Fatal("a client with a foreign CA's certificate got a tunnel")
	}
}

// TestOurClientToIstioServer: our client opens a tunnel through Istio's
// HBONE server (which dials the authority itself) to a loopback echo
// server; the half-close reaches the far end and the echo comes back.
func TestOurClientToIstioServer(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) // ends on the tunnel's half-close
			}()
		}
	}()

	srvCert := e.ca.MustIssue(t, e.dst, time.Hour)
	srv := istiohbone.NewServer()
	srv.TLSConfig = istioTLS(srvCert, e.ca.Bundle(), e.src)
	srv.Protocols.SetHTTP2(true) // Istio's server enables h2c only; ztunnel peers speak h2 over TLS
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-served })

	req := e.req(echo.Addr().String())
	req.Peer = ln.Addr().(*net.TCPAddr).AddrPort()
	req.ExpectedPeers = []spiffe.Identity{e.dst}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.cl.Dial(ctx, req)
	if err != nil {
		t.Fatalf("our client through Istio's server: %v", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "hello from our client" + string(make([]byte, 64<<10))
	if _, err := s.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
	}

	// A target with nothing listening: Istio's server flushes its 200
	// before it dials, then ends the stream; our client must see the
	// tunnel end with no data (not hang, not invent bytes).
	dead := e.req(closedPort(t).String())
	dead.Peer = req.Peer
	ds, err := e.cl.Dial(ctx, dead)
	if err != nil {
		return // refused at CONNECT: also a clean failure
	}
	defer ds.Close()
	ds.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(ds); len(b) != 0 || isTimeout(err) {
		t.Fatalf("tunnel to a closed port: read %d bytes, err %v; want it ended with no data", len(b), err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return a
}
