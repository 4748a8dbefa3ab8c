package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
)

// echoSerials accepts every stream, reports the serial of the client
// certificate the server verified, and echoes until the client's EOF.
func echoSerials(serials chan<- *big.Int) Handler {
	return acceptHandler(func(r *Request, s *Stream) {
		serials <- r.PeerCertificate.SerialNumber
		io.Copy(s, s)
		s.Close()
	})
}

// roundTrip writes msg on s and reads it back (deadline for liveness only).
func roundTrip(t *testing.T, s *Stream, msg string) {
	t.Helper()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	defer s.SetDeadline(time.Time{})
	if _, err := s.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != msg {
		t.Fatalf("read back %q, %v; want %q", buf, err, msg)
	}
}

func wantSerial(t *testing.T, serials <-chan *big.Int, cert *tls.Certificate, what string) {
	t.Helper()
	if got := <-serials; got.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatalf("%s: server saw certificate serial %x, want %x", what, got, cert.Leaf.SerialNumber)
	}
}

func TestCertRotationNewStreamsUseRenewedCertificate(t *testing.T) {
	serials := make(chan *big.Int, 4)
	e := newEnv(t, echoSerials(serials))
	now := time.Now()
	certA, err := e.ca.IssueValidity(e.src, now.Add(-time.Minute), now.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e.certs.Set(e.src, certA)

	s1 := e.dial(t, "10.0.0.1:80")
	defer s1.Close()
	wantSerial(t, serials, certA, "stream 1")
	roundTrip(t, s1, "one")

	// Renewal: the source now hands out B.
	certB := e.ca.MustIssue(t, e.src, time.Hour)
	e.certs.Set(e.src, certB)
	s2 := e.dial(t, "10.0.0.2:80")
	defer s2.Close()
	wantSerial(t, serials, certB, "stream 2 (after renewal)")
	if n := e.dials.count(); n != 2 {
		t.Fatalf("%d connections dialed, want 2 (one per certificate)", n)
	}
	if st := e.cl.Stats(); st.Conns != 2 {
		t.Fatalf("client has %d connections, want 2 (the old one drains stream 1)", st.Conns)
	}
	// Further streams share B's connection.
	s3 := e.dial(t, "10.0.0.3:80")
	wantSerial(t, serials, certB, "stream 3")
	roundTrip(t, s3, "three")
	s3.Close()
	if n := e.dials.count(); n != 2 {
		t.Fatalf("%d connections dialed, want stream 3 on B's connection", n)
	}

	// A tunnel opened with A keeps flowing after A has expired.
	deadline := time.Now().Add(10 * time.Second)
	for !time.Now().After(certA.Leaf.NotAfter) {
		if time.Now().After(deadline) {
			t.Fatal("certificate A never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	roundTrip(t, s1, "one, after A expired")
	roundTrip(t, s2, "two")

	// Its last stream done, A's connection goes away; B's stays.
	s1.Close()
	eventually(t, "the old connection to close", func() bool { return e.cl.Stats().Conns == 1 })
	roundTrip(t, s2, "two, still")
	e.cl.mu.Lock()
	for _, kp := range e.cl.pools {
		for _, c := range kp.conns {
			if !sameCert(c.cert, certB) {
				t.Errorf("pooled connection opened with serial %x, want only B", c.cert.Leaf.SerialNumber)
			}
		}
	}
	e.cl.mu.Unlock()
}

func TestDialExpiredCertificate(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }))
	check := func(t *testing.T, err error) {
		t.Helper()
		var de *DialError
		if !errors.As(err, &de) || de.Op != "cert" || !errors.Is(err, ErrCertExpired) {
			t.Fatalf("Dial err = %v, want a cert DialError, errors.Is ErrCertExpired", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "certificate for "+e.src.String()+" expired at ") || !strings.Contains(msg, "is the CA reachable?") {
			t.Fatalf("Dial err = %q, want it to name the identity, the expiry and the CA", msg)
		}
	}

	t.Run("new connection", func(t *testing.T) {
		e.certs.Set(e.src, e.ca.MustIssue(t, e.src, -time.Minute))
		_, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
		check(t, err)
		if n := e.dials.count(); n != 0 {
			t.Fatalf("%d TCP dials with an expired certificate, want 0", n)
		}
	})

	t.Run("pooled connection", func(t *testing.T) {
		e.certs.Set(e.src, e.ca.MustIssue(t, e.src, time.Hour))
		s := e.dial(t, "10.0.0.1:80")
		defer s.Close()
		// The source has nothing current (e.g. renewal failed past expiry).
		e.certs.Set(e.src, e.ca.MustIssue(t, e.src, -time.Minute))
		_, err := e.cl.Dial(context.Background(), e.req("10.0.0.2:80"))
		check(t, err)
		if st := e.srv.Stats(); st.Streams > 1 {
			t.Fatalf("server has %d streams, want only the first", st.Streams)
		}
		roundTrip(t, s, "still flowing")
	})
}

func TestCheckCertExpiry(t *testing.T) {
	ca := hbonetest.MustCA(t, "cluster.local")
	id := ca.Identity("default", "client")
	valid := ca.MustIssue(t, id, time.Hour)
	expired := ca.MustIssue(t, id, -time.Minute)
	noLeaf := func(c *tls.Certificate) *tls.Certificate { c2 := *c; c2.Leaf = nil; return &c2 }
	tests := []struct {
		name        string
		cert        *tls.Certificate
		now         time.Time
		wantExpired bool
	}{
		{"valid", valid, time.Now(), false},
		{"expired", expired, time.Now(), true},
		{"expired, no Leaf (parsed)", noLeaf(expired), time.Now(), true},
		{"valid, no Leaf (parsed)", noLeaf(valid), time.Now(), false},
		{"at NotAfter", valid, valid.Leaf.NotAfter, false},
		{"just past NotAfter", valid, valid.Leaf.NotAfter.Add(time.Nanosecond), true},
		{"no leaf at all", &tls.Certificate{}, time.Now(), false},
	}
	for _, tt := range tests {
		err := checkCertExpiry(id, tt.cert, tt.now)
		if got := errors.Is(err, ErrCertExpired); got != tt.wantExpired {
			t.Errorf("%s: checkCertExpiry = %v, want expired %v", tt.name, err, tt.wantExpired)
		}
	}
}

func TestSameCert(t *testing.T) {
	ca := hbonetest.MustCA(t, "cluster.local")
	id := ca.Identity("default", "client")
	a := ca.MustIssue(t, id, time.Hour)
	b := ca.MustIssue(t, id, time.Hour)
	aCopy := &tls.Certificate{Certificate: [][]byte{append([]byte(nil), a.Certificate[0]...)}, PrivateKey: a.PrivateKey}
	tests := []struct {
		name      string
		opened    *tls.Certificate
		cur       *tls.Certificate
		wantReuse bool
	}{
		{"same pointer", a, a, true},
		{"same leaf, other pointer", a, aCopy, true},
		{"renewed", a, b, false},
		{"renewed back", b, a, false},
		{"empty chains", &tls.Certificate{}, &tls.Certificate{}, false},
		{"nil opened", nil, a, false},
	}
	for _, tt := range tests {
		if got := sameCert(tt.opened, tt.cur); got != tt.wantReuse {
			t.Errorf("%s: sameCert = %v, want %v", tt.name, got, tt.wantReuse)
		}
	}
}

// The server refuses an expired client certificate on its own, whatever
// the client checks (e.g. a client with a slow clock).
func TestServerRefusesExpiredClientCertificate(t *testing.T) {
	called := make(chan struct{}, 1)
	e := newEnv(t, HandlerFunc(func(context.Context, *Request) { called <- struct{}{} }))
	expired := e.ca.MustIssue(t, e.src, -time.Minute)
	tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{ALPN}, Certificates: []tls.Certificate{*expired},
	})
	if err == nil {
		defer tc.Close()
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = tc.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read after handshake with an expired client certificate: %v, want a TLS alert", err)
		}
	}
	select {
	case <-called:
		t.Fatal("handler called for an expired client certificate")
	default:
	}
}
