package hbone

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCopyFromSocket: CopyFrom from a TCP socket (the RawConn path) carries
// every byte in order, through reads that fill and do not fill its
// buffers, counts them, and returns at the socket's EOF.
func TestCopyFromSocket(t *testing.T) {
	got := make(chan []byte, 1)
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		b, _ := io.ReadAll(s)
		got <- b
	}))
	want := make([]byte, 3<<20)
	rand.Read(want)
	tc, ts := tcpPair(t)
	go func() {
		// Small writes with pauses (the small buffer, idle waits), then
		// bulk (the large buffer), then small again.
		for i := 0; i < 20; i++ {
			tc.Write(want[i*100 : (i+1)*100])
			time.Sleep(time.Millisecond)
		}
		tc.Write(want[2000 : len(want)-500])
		time.Sleep(10 * time.Millisecond)
		tc.Write(want[len(want)-500:])
		tc.CloseWrite()
	}()
	s := e.dial(t, "10.0.0.1:80")
	var n atomic.Int64
	total, err := s.CopyFrom(ts, &n)
	if err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	s.CloseWrite()
	if total != int64(len(want)) || n.Load() != int64(len(want)) {
		t.Errorf("CopyFrom = %d, counted %d, want %d", total, n.Load(), len(want))
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Errorf("the far end got %d bytes that differ from the %d sent", len(b), len(want))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the far end did not see the end of the stream")
	}
}

// TestCopyFromSocketReset: a reset from the socket's peer ends CopyFrom
// with the error net.Conn.Read gives (a *net.OpError wrapping ECONNRESET).
func TestCopyFromSocketReset(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }))
	tc, ts := tcpPair(t)
	tc.Write([]byte("some bytes, then a reset"))
	tc.SetLinger(0)
	tc.Close()
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	_, err := s.CopyFrom(ts, nil)
	var op *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &op) || op.Op != "read" {
		t.Fatalf("CopyFrom after a reset: %v, want a read *net.OpError with ECONNRESET", err)
	}
}

// TestSourceHoldsNoBufferWhileIdle: the read callback gives its buffer
// back when the socket has nothing to read, and holds one only with data.
func TestSourceHoldsNoBufferWhileIdle(t *testing.T) {
	tc, ts := tcpPair(t)
	rc, err := ts.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	src := &source{}
	var done bool
	if err := rc.Control(func(fd uintptr) { done = src.read(fd) }); err != nil {
		t.Fatal(err)
	}
	if done || src.buf != nil {
		t.Fatalf("idle socket: read returned %v holding a buffer: %v", done, src.buf != nil)
	}
	tc.Write([]byte("hello"))
	deadline := time.Now().Add(5 * time.Second)
	for !done && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if err := rc.Control(func(fd uintptr) { done = src.read(fd) }); err != nil {
			t.Fatal(err)
		}
	}
	if !done || src.buf == nil || src.n != 5 || string((*src.buf)[:src.n]) != "hello" {
		t.Fatalf("with data: done %v, n %d, err %v", done, src.n, src.err)
	}
	src.release()
	if src.buf != nil {
		t.Fatal("release kept the buffer")
	}
}
