package relay

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// pipeConn hides *net.TCPConn so Copy takes the buffered path.
type pipeConn struct{ net.Conn }

func (p pipeConn) CloseWrite() error { return p.Conn.(*net.TCPConn).CloseWrite() }

func TestRelayHalfClose(t *testing.T) {
	for _, wrap := range []struct {
		name string
		f    func(*net.TCPConn) net.Conn
	}{
		{"splice", func(c *net.TCPConn) net.Conn { return c }},
		{"buffered", func(c *net.TCPConn) net.Conn { return pipeConn{c} }},
	} {
		t.Run(wrap.name, func(t *testing.T) {
			// client ⇄ [a relay b] ⇄ server
			client, a := tcpPair(t)
			b, server := tcpPair(t)
			var c Counters
			res := make(chan Result, 1)
			go func() { res <- Relay(wrap.f(a), wrap.f(b), &c) }()

			req := bytes.Repeat([]byte("q"), 200_000)
			if _, err := client.Write(req); err != nil {
				t.Fatal(err)
			}
			client.CloseWrite()
			got, err := io.ReadAll(server)
			if err != nil || !bytes.Equal(got, req) {
				t.Fatalf("server read %d bytes, err %v", len(got), err)
			}
			// The server still writes after the client's half-close.
			if _, err := server.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			server.CloseWrite()
			got, err = io.ReadAll(client)
			if err != nil || string(got) != "answer" {
				t.Fatalf("client read %q, err %v", got, err)
			}
			r := <-res
			if r.Err != nil || r.AToB != int64(len(req)) || r.BToA != 6 {
				t.Fatalf("result = %+v", r)
			}
			if c.AToB.Load() != r.AToB {
				t.Fatalf("counters = %d, result %d", c.AToB.Load(), r.AToB)
			}
		})
	}
}

func TestRelayResetPropagates(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	res := make(chan Result, 1)
	go func() { res <- Relay(a, b, nil) }()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	Abort(server) // the server resets
	r := <-res
	if r.Err == nil {
		t.Fatal("relay reported no error after a reset")
	}
	if _, err := client.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read err = %v, want ECONNRESET", err)
	}
}

func BenchmarkCopySplice(b *testing.B) { benchCopy(b, func(c *net.TCPConn) net.Conn { return c }) }
func BenchmarkCopyBuffered(b *testing.B) {
	benchCopy(b, func(c *net.TCPConn) net.Conn { return pipeConn{c} })
}

func benchCopy(b *testing.B, wrap func(*net.TCPConn) net.Conn) {
	client, a := tcpPair(b)
	bb, server := tcpPair(b)
	go Relay(wrap(a), wrap(bb), nil)
	go io.Copy(io.Discard, server)
	chunk := make([]byte, 256<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	client.Close()
	server.Close()
}

type resetConn struct {
	net.Conn
	reset, closed bool
}

func (r *resetConn) Reset() error { r.reset = true; return nil }
func (r *resetConn) Close() error { r.closed = true; return nil }

func TestAbortPrefersReset(t *testing.T) {
	c := &resetConn{}
	Abort(c)
	if !c.reset || c.closed {
		t.Fatalf("Abort: reset %v, closed %v; want Reset only", c.reset, c.closed)
	}
}
