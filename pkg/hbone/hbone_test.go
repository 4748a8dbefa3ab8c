package hbone

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestRoundTripClientHalfClose(t *testing.T) {
	type seen struct {
		req  Request
		data []byte
		err  error
	}
	got := make(chan seen, 1)
	e := newEnv(t, acceptHandler(func(r *Request, s *Stream) {
		data, err := io.ReadAll(s) // ends with the client's CloseWrite
		got <- seen{req: *r, data: data, err: err}
		if err == nil {
			s.Write([]byte("reply after EOF: "))
			s.Write(data)
		}
	}))
	req := e.req("10.1.2.3:8080")
	req.ForwardedFor = netip.MustParseAddr("10.9.9.9")
	req.Baggage = "k=v"
	req.Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	s, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	payload := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, several windows' worth of frames
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	g := <-got
	if g.err != nil || !bytes.Equal(g.data, payload) {
		t.Fatalf("server read %d bytes, err %v; want %d bytes, EOF", len(g.data), g.err, len(payload))
	}
	if want := append([]byte("reply after EOF: "), payload...); !bytes.Equal(reply, want) {
		t.Fatalf("client got %d bytes, want %d", len(reply), len(want))
	}
	if g.req.Peer != e.src {
		t.Errorf("peer = %v, want %v", g.req.Peer, e.src)
	}
	if g.req.Authority != req.Authority || g.req.ForwardedFor != req.ForwardedFor ||
		g.req.Baggage != req.Baggage || g.req.Traceparent != req.Traceparent {
		t.Errorf("request target = %+v, want %+v", g.req.Target, req.Target)
	}
	if s.LocalAddr() == nil || s.RemoteAddr().String() != e.peer.String() {
		t.Errorf("addrs = %v -> %v, want remote %v", s.LocalAddr(), s.RemoteAddr(), e.peer)
	}
}

func TestRoundTripServerHalfClose(t *testing.T) {
	got := make(chan []byte, 1)
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		s.Write([]byte("greeting"))
		if err := s.CloseWrite(); err != nil {
			got <- []byte("CloseWrite: " + err.Error())
			return
		}
		data, err := io.ReadAll(s) // the client keeps writing after our EOF
		if err != nil {
			data = []byte("read: " + err.Error())
		}
		got <- data
	}))
	s := e.dial(t, "10.1.2.3:80")
	defer s.Close()
	greeting, err := io.ReadAll(s)
	if err != nil || string(greeting) != "greeting" {
		t.Fatalf("client read %q, %v; want greeting, EOF", greeting, err)
	}
	if _, err := s.Write([]byte("written after server EOF")); err != nil {
		t.Fatalf("write after server half-close: %v", err)
	}
	s.CloseWrite()
	if g := <-got; string(g) != "written after server EOF" {
		t.Fatalf("server read %q", g)
	}
}

func TestIPv6Authority(t *testing.T) {
	got := make(chan Target, 1)
	e := newEnv(t, acceptHandler(func(r *Request, _ *Stream) { got <- r.Target }))
	req := e.req("[fd00::1]:443")
	req.ForwardedFor = netip.MustParseAddr("fd00::2")
	s, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if g := <-got; g.Authority != req.Authority || g.ForwardedFor != req.ForwardedFor {
		t.Fatalf("server saw %+v, want %+v", g, req.Target)
	}
}

func TestHandlerRejects(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{401, ErrDenied},
		{503, ErrUpstreamUnreachable},
		{400, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.want.Error()[:20], func(t *testing.T) {
			e := newEnv(t, HandlerFunc(func(_ context.Context, r *Request) { r.Reject(tt.status) }))
			_, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
			var se *StatusError
			if !errors.Is(err, tt.want) || !errors.As(err, &se) || se.Status != tt.status {
				t.Fatalf("Dial err = %v, want status %d (%v)", err, tt.status, tt.want)
			}
			// The connection stays usable and the rejected stream is gone.
			eventually(t, "streams to drain", func() bool { return e.cl.Stats().Streams == 0 && e.srv.Stats().Streams == 0 })
			if c := e.cl.Stats().Conns; c != 1 {
				t.Fatalf("client conns = %d, want 1", c)
			}
		})
	}
}

func TestHandlerWithoutAnswerGets503(t *testing.T) {
	e := newEnv(t, HandlerFunc(func(context.Context, *Request) {}))
	if _, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80")); !errors.Is(err, ErrUpstreamUnreachable) {
		t.Fatalf("Dial err = %v, want ErrUpstreamUnreachable", err)
	}
}

func TestTLSRefused(t *testing.T) {
	other := hbonetest.MustCA(t, "cluster.local")
	evil := hbonetest.MustCA(t, "evil.org")
	tests := []struct {
		name string
		cert func(e *env) *tls.Certificate
	}{
		{"wrong trust domain", func(e *env) *tls.Certificate {
			// Signed by the trusted root but naming another trust domain.
			return e.ca.MustIssue(t, evil.Identity("default", "client"), time.Hour)
		}},
		{"unknown CA", func(*env) *tls.Certificate { return other.MustIssue(t, other.Identity("default", "client"), time.Hour) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			e := newEnv(t, HandlerFunc(func(_ context.Context, r *Request) { called = true; r.Reject(401) }))
			e.certs.Set(e.src, tt.cert(e))
			_, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
			var de *DialError
			if !errors.As(err, &de) || de.Op != "tls" {
				t.Fatalf("Dial err = %v, want a TLS DialError", err)
			}
			if called {
				t.Fatal("handler called for a refused client")
			}
		})
	}
}

func TestServerIdentityChecked(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	req := e.req("10.0.0.1:80")
	req.ExpectedPeers = []spiffe.Identity{e.ca.Identity("default", "someone-else")}
	_, err := e.cl.Dial(context.Background(), req)
	if !errors.Is(err, ErrPeerIdentity) {
		t.Fatalf("Dial err = %v, want ErrPeerIdentity", err)
	}
	req.ExpectedPeers = append(req.ExpectedPeers, e.dst)
	s, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatalf("Dial with the right expected identity: %v", err)
	}
	s.Close()
}

func TestServerUntrustedByClient(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(_ *ServerConfig, c *ClientConfig) {
		other := hbonetest.MustCA(t, "cluster.local")
		c.Bundle = other.Bundle
	})
	_, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
	var de *DialError
	if !errors.As(err, &de) || de.Op != "tls" {
		t.Fatalf("Dial err = %v, want a TLS DialError", err)
	}
}

func TestDialUnreachableHint(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	req := e.req("10.0.0.1:80")
	req.Peer = dead
	_, err := e.cl.Dial(context.Background(), req)
	var de *DialError
	if !errors.As(err, &de) || de.Op != "dial" || !bytes.Contains([]byte(err.Error()), []byte("15008")) {
		t.Fatalf("Dial err = %v, want a dial DialError with a port 15008 hint", err)
	}
}

func TestPoolOpensSecondConnAt101(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { <-release }), packStreams)
	var streams []*Stream
	defer func() {
		close(release)
		for _, s := range streams {
			s.Close()
		}
	}()
	for i := 0; i < 100; i++ {
		streams = append(streams, e.dial(t, "10.0.0.1:80"))
	}
	if st := e.cl.Stats(); st.Conns != 1 || st.Streams != 100 {
		t.Fatalf("after 100 streams: client stats %+v, want 1 conn, 100 streams", st)
	}
	streams = append(streams, e.dial(t, "10.0.0.1:80"))
	if st := e.cl.Stats(); st.Conns != 2 || st.Streams != 101 {
		t.Fatalf("after 101 streams: client stats %+v, want 2 conns, 101 streams", st)
	}
	if st := e.srv.Stats(); st.Conns != 2 || st.Streams != 101 {
		t.Fatalf("server stats %+v, want 2 conns, 101 streams", st)
	}
}

func TestPoolRespectsServerMaxStreams(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { <-release }), func(s *ServerConfig, _ *ClientConfig) {
		s.MaxConcurrentStreams = 3
	})
	var streams []*Stream
	defer func() {
		close(release)
		for _, s := range streams {
			s.Close()
		}
	}()
	for i := 0; i < 7; i++ {
		streams = append(streams, e.dial(t, "10.0.0.1:80"))
	}
	if st := e.cl.Stats(); st.Conns != 3 {
		t.Fatalf("client stats %+v, want 3 conns for 7 streams at 3 per conn", st)
	}
}

// packStreams turns spreading off: streams pack onto one connection.
func packStreams(_ *ServerConfig, c *ClientConfig) { c.SpreadStreams = -1 }

func dialConcurrently(t *testing.T, e *env, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestPoolConcurrentDialsShareOneConnection(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }), packStreams)
	dialConcurrently(t, e, 50)
	if n := e.dials.count(); n != 1 {
		t.Fatalf("%d TCP dials for 50 concurrent streams, want 1", n)
	}
}

func TestPoolConcurrentDialsSpreadOverFewConnections(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }))
	dialConcurrently(t, e, 50)
	if n := e.dials.count(); n < 1 || n > DefaultMaxSpreadConns {
		t.Fatalf("%d TCP dials for 50 concurrent streams, want 1 to %d", n, DefaultMaxSpreadConns)
	}
}

// A connection dialled only to spread streams that cannot be opened does
// not fail the stream: it goes on a connection that has room.
func TestPoolSpreadDialFailureFallsBack(t *testing.T) {
	var dials atomic.Int32
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }), func(_ *ServerConfig, c *ClientConfig) {
		var d net.Dialer
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				return nil, errors.New("no more connections")
			}
			return d.DialContext(ctx, network, addr)
		}
	})
	var streams []*Stream
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	for i := 0; i < DefaultSpreadStreams+2; i++ {
		streams = append(streams, e.dial(t, "10.0.0.1:80"))
	}
	if st := e.cl.Stats(); st.Conns != 1 || st.Streams != DefaultSpreadStreams+2 {
		t.Fatalf("client stats %+v, want all streams on the one connection", st)
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("%d dials, want the spreading dial tried", n)
	}
}

// Busy peers get several connections: 4 streams per connection until there
// are 4, then the least loaded one; each stream still works.
func TestPoolSpreadsStreams(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }))
	var streams []*Stream
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	wantConns := []int64{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}
	for i, want := range wantConns {
		streams = append(streams, e.dial(t, "10.0.0.1:80"))
		if st := e.cl.Stats(); st.Conns != want || st.Streams != int64(i+1) {
			t.Fatalf("after %d streams: client stats %+v, want %d conns", i+1, st, want)
		}
	}
	perConn := map[*conn]int{}
	for _, s := range streams {
		perConn[s.c]++
	}
	for c, n := range perConn {
		if n < 5 || n > 6 {
			t.Errorf("connection %p carries %d streams, want 5 or 6 (22 over 4)", c, n)
		}
	}
	for i, s := range streams {
		msg := []byte{byte(i)}
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1)
		if _, err := io.ReadFull(s, got); err != nil || got[0] != byte(i) {
			t.Fatalf("stream %d echoed %v, %v", i, got, err)
		}
	}
	if st := e.srv.Stats(); st.Conns != 4 || st.Streams != int64(len(streams)) {
		t.Fatalf("server stats %+v, want 4 conns, %d streams", st, len(streams))
	}
}

func TestPoolKeyedBySourceIdentity(t *testing.T) {
	peers := make(chan string, 2)
	e := newEnv(t, acceptHandler(func(r *Request, s *Stream) { peers <- r.Peer.String(); io.Copy(io.Discard, s) }))
	other := e.ca.Identity("other", "sa")
	e.certs.Set(other, e.ca.MustIssue(t, other, time.Hour))
	s1 := e.dial(t, "10.0.0.1:80")
	defer s1.Close()
	req := e.req("10.0.0.1:80")
	req.Source = other
	s2, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := []string{<-peers, <-peers}; got[0] == got[1] {
		t.Fatalf("server saw peers %v, want two identities", got)
	}
	if c := e.cl.Stats().Conns; c != 2 {
		t.Fatalf("conns = %d, want one per source identity", c)
	}
}

func TestKilledConnectionFailsStreams(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }), packStreams)
	var streams []*Stream
	for i := 0; i < 5; i++ {
		streams = append(streams, e.dial(t, "10.0.0.1:80"))
	}
	e.ln.killAll()
	for i, s := range streams {
		done := make(chan error, 1)
		go func() {
			var b [16]byte
			_, err := s.Read(b[:])
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrConnClosed) {
				t.Errorf("stream %d: Read err = %v, want ErrConnClosed", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d still open 5 s after its connection was killed", i)
		}
		if _, err := s.Write([]byte("x")); err == nil {
			t.Errorf("stream %d: Write on a dead connection succeeded", i)
		}
		s.Close()
	}
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if _, err := io.ReadFull(s, b[:]); err != nil || string(b[:]) != "ping" {
		t.Fatalf("echo on the new connection: %q, %v", b, err)
	}
	if n := e.dials.count(); n != 2 {
		t.Fatalf("%d dials, want 2 (the broken connection must not be reused)", n)
	}
}

func TestIdleConnectionsReaped(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(_ *ServerConfig, c *ClientConfig) {
		c.IdleTimeout = 20 * time.Millisecond
	})
	s := e.dial(t, "10.0.0.1:80")
	s.Close()
	eventually(t, "idle client connection to be closed", func() bool { return e.cl.Stats().Conns == 0 })
	eventually(t, "server to see the close", func() bool { return e.srv.Stats().Conns == 0 })
}

func TestHealthCheckClosesBlackholedConnection(t *testing.T) {
	// A TCP relay that can stop forwarding, like a path that silently drops.
	var (
		mu      sync.Mutex
		blocked bool
	)
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }))
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		c, err := relay.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", e.peer.String())
		if err != nil {
			c.Close()
			return
		}
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			defer dst.Close()
			defer src.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if err != nil {
					return
				}
				mu.Lock()
				b := blocked
				mu.Unlock()
				if !b {
					dst.Write(buf[:n])
				}
			}
		}
		wg.Add(2)
		go pipe(up, c)
		go pipe(c, up)
	}()
	cl, err := NewClient(ClientConfig{Certs: e.certs, Bundle: e.ca.Bundle, Limits: Limits{ReadIdleTimeout: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := e.req("10.0.0.1:80")
	req.Peer = relay.Addr().(*net.TCPAddr).AddrPort()
	s, err := cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mu.Lock()
	blocked = true
	mu.Unlock()
	done := make(chan error, 1)
	go func() { _, err := s.Read(make([]byte, 1)); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConnClosed) {
			t.Fatalf("Read err = %v, want ErrConnClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream on a blackholed connection still open after 5 s")
	}
	e.ln.killAll() // let the relay goroutines finish
}

func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(s *ServerConfig, _ *ClientConfig) {
		s.HandshakeTimeout = 50 * time.Millisecond
	})
	c, err := net.Dial("tcp", e.peer.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1)) // we never send a ClientHello
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a stalled handshake open for 5 s")
	}
	if err == nil {
		t.Fatal("server sent data to a client that said nothing")
	}
}

func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }))
	s := e.dial(t, "10.0.0.1:80")
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	eventually(t, "listener to close", func() bool {
		_, err := net.Dial("tcp", e.peer.String())
		return err != nil
	})
	// The open stream still works while draining.
	if _, err := s.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		t.Fatalf("echo while draining: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	default:
	}
	s.CloseWrite()
	io.ReadAll(s)
	s.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }))
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown err = %v, want DeadlineExceeded", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Read after forced shutdown: %v, want ErrConnClosed", err)
	}
}

func TestReadDeadline(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }))
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read err = %v, want deadline exceeded", err)
	}
}

// burstReader returns full reads for bursts of burst calls, then one short
// read, so Stream.ReadFrom switches between its buffers.
type burstReader struct {
	r     io.Reader
	burst int
	calls int
}

func (b *burstReader) Read(p []byte) (int, error) {
	b.calls++
	if b.calls%(b.burst+1) == 0 && len(p) > 100 {
		p = p[:100]
	}
	return b.r.Read(p)
}

func TestCopyPaths(t *testing.T) {
	// io.Copy uses Stream.ReadFrom on the sending side and Stream.WriteTo
	// on the receiving side.
	tests := []struct {
		name string
		src  func(io.Reader) io.Reader
	}{
		{"full reads (large buffer)", func(r io.Reader) io.Reader { return r }},
		{"half reads (small buffer)", iotest.HalfReader},
		{"bursts (switching)", func(r io.Reader) io.Reader { return &burstReader{r: r, burst: 3} }},
		{"one byte reads", iotest.OneByteReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
				var buf bytes.Buffer
				n, err := s.WriteTo(&buf)
				if err != nil || n != int64(buf.Len()) {
					buf.WriteString("WriteTo error")
				}
				got <- buf.Bytes()
			}))
			size := 3<<20 + 17
			if tt.name == "one byte reads" {
				size = 64<<10 + 3
			}
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			s := e.dial(t, "10.0.0.1:80")
			defer s.Close()
			n, err := s.ReadFrom(tt.src(io.LimitReader(bytes.NewReader(payload), int64(len(payload)))))
			if err != nil || n != int64(len(payload)) {
				t.Fatalf("ReadFrom = %d, %v", n, err)
			}
			s.CloseWrite()
			if g := <-got; !bytes.Equal(g, payload) {
				t.Fatalf("server received %d bytes, want %d identical", len(g), len(payload))
			}
		})
	}
}

func TestManyStreamsInterleaved(t *testing.T) {
	// Many concurrent bidirectional streams on shared connections, more
	// data than the connection window, checked byte for byte.
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		io.Copy(s, s)
		s.CloseWrite()
	}), func(s *ServerConfig, c *ClientConfig) {
		s.StreamWindow, s.ConnWindow = 64<<10, 256<<10
		c.StreamWindow, c.ConnWindow = 64<<10, 256<<10
	})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			payload := bytes.Repeat([]byte{byte(i)}, 300_000+i)
			go func() {
				s.Write(payload)
				s.CloseWrite()
			}()
			back, err := io.ReadAll(s)
			if err != nil || !bytes.Equal(back, payload) {
				errs <- errors.New("echo mismatch")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSmallWindowsNoStall(t *testing.T) {
	// One Write much larger than the peer's window: the frames sent so far
	// must reach the peer before the writer waits for window, or both wait
	// forever.
	got := make(chan int64, 1)
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		n, _ := io.Copy(io.Discard, s)
		got <- n
	}), func(s *ServerConfig, _ *ClientConfig) {
		s.StreamWindow = 20000
	})
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(make([]byte, 1<<20))
		s.CloseWrite()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		s.Close()
		<-done
		t.Fatal("1 MiB write through a 20000-byte window stalled for 10 s")
	}
	if n := <-got; n != 1<<20 {
		t.Fatalf("server read %d bytes", n)
	}
}

func TestDialContextCancelledWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, HandlerFunc(func(_ context.Context, r *Request) {
		<-release // never answers in time
		r.Reject(503)
	}))
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.cl.Dial(ctx, e.req("10.0.0.1:80")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial err = %v, want DeadlineExceeded", err)
	}
	eventually(t, "the abandoned stream to be reset", func() bool { return e.cl.Stats().Streams == 0 && e.srv.Stats().Streams == 0 })
}

func TestDialWithoutCertificate(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	req := e.req("10.0.0.1:80")
	req.Source = e.ca.Identity("nobody", "none")
	_, err := e.cl.Dial(context.Background(), req)
	var de *DialError
	if !errors.As(err, &de) || de.Op != "cert" || e.dials.count() != 0 {
		t.Fatalf("Dial err = %v (%d TCP dials), want a cert DialError before dialing", err, e.dials.count())
	}
}

func TestFailedDialLeavesNoPoolEntry(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	req := e.req("10.0.0.1:80")
	req.Source = e.ca.Identity("nobody", "none")
	if _, err := e.cl.Dial(context.Background(), req); err == nil {
		t.Fatal("Dial without a certificate succeeded")
	}
	e.cl.mu.Lock()
	n := len(e.cl.pools)
	e.cl.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d pool entries after a failed dial, want 0", n)
	}
}
