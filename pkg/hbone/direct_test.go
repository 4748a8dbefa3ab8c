package hbone

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// smallMessages is what the server sends: many frames below directReadMin,
// of varying sizes, with distinct contents.
func smallMessages(total int) [][]byte {
	var msgs [][]byte
	for i := 0; total > 0; i++ {
		n := min(100+i*37%3000, total)
		m := make([]byte, n)
		for j := range m {
			m[j] = byte(i + j)
		}
		msgs = append(msgs, m)
		total -= n
	}
	return msgs
}

// CopyTo to a TCP socket: small frames are written by the read loop
// directly while CopyTo waits, and when the socket is full the rest goes
// through CopyTo; either way the bytes arrive complete and in order and
// are counted once.
func TestCopyToSocket(t *testing.T) {
	tests := []struct {
		name       string
		total      int
		slowReader bool // the socket's reader starts late: its buffers fill
	}{
		{"reader keeps up", 256 << 10, false},
		{"socket full", 2 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := smallMessages(tt.total)
			start := make(chan struct{})
			e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
				// Start once CopyTo (most likely) waits for data.
				<-start
				time.Sleep(20 * time.Millisecond)
				for _, m := range msgs {
					if _, err := s.Write(m); err != nil {
						return
					}
				}
				s.CloseWrite()
			}))
			s := e.dial(t, "10.0.0.1:80")
			defer s.Close()
			dst, far := tcpPair(t)
			if tt.slowReader {
				dst.SetWriteBuffer(64 << 10)
				far.SetReadBuffer(64 << 10)
			}
			got := make(chan []byte, 1)
			go func() {
				if tt.slowReader {
					time.Sleep(200 * time.Millisecond)
				}
				b, _ := io.ReadAll(far)
				got <- b
			}()
			var counted atomic.Int64
			close(start)
			n, err := s.CopyTo(dst, &counted)
			if err != nil {
				t.Fatalf("CopyTo: %v", err)
			}
			dst.CloseWrite()
			want := bytes.Join(msgs, nil)
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("socket got %d bytes, want %d (or different contents)", len(b), len(want))
			}
			if n != int64(len(want)) || counted.Load() != n {
				t.Fatalf("CopyTo = %d, counted %d, want %d", n, counted.Load(), len(want))
			}
			s.c.mu.Lock()
			direct := s.sinkBytes
			s.c.mu.Unlock()
			if direct == 0 {
				t.Error("no byte was written by the read loop directly")
			}
			if tt.slowReader && direct >= n {
				t.Errorf("all %d bytes written directly although the socket was full", n)
			}
		})
	}
}

// A socket that fails (its peer reset it) ends CopyTo with an error, and
// the stream can still be closed.
func TestCopyToSocketBroken(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		for i := 0; ; i++ {
			if i == 10 {
				<-release
			}
			if _, err := s.Write(make([]byte, 500)); err != nil {
				return
			}
		}
	}))
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	dst, far := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, err := s.CopyTo(dst, nil); done <- err }()
	if _, err := io.ReadFull(far, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	far.SetLinger(0)
	far.Close()
	time.Sleep(20 * time.Millisecond) // let the RST arrive
	close(release)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("CopyTo to a reset socket returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CopyTo still running 10 s after its socket was reset")
	}
}

// Closing the stream while the read loop may be writing to the socket
// ends CopyTo and loses no connection window: the next stream on the same
// connection still gets a full window's worth of data.
func TestCopyToSocketClosedMidway(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		for {
			if _, err := s.Write(make([]byte, 700)); err != nil {
				return
			}
		}
	}), packStreams, func(s *ServerConfig, c *ClientConfig) { c.ConnWindow = 1 << 20 })
	for i := 0; i < 5; i++ {
		s := e.dial(t, "10.0.0.1:80")
		dst, far := tcpPair(t)
		go io.Copy(io.Discard, far)
		done := make(chan error, 1)
		go func() { _, err := s.CopyTo(dst, nil); done <- err }()
		time.Sleep(20 * time.Millisecond)
		s.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: CopyTo still running 10 s after Close", i)
		}
	}
	// 5 streams × 20 ms at loopback speed is far more than the 1 MiB
	// connection window: had the closed streams kept window, this stream
	// would stall.
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	if _, err := io.ReadFull(s, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	if st := e.cl.Stats(); st.Conns != 1 {
		t.Fatalf("client stats %+v, want the one connection reused", st)
	}
}
