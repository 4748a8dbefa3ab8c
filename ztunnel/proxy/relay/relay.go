package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ambient-mesh/ambient/pkg/hbone"
)

// BufferSize is the size of the pooled buffers of the generic copy path.
const BufferSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// Counters are the bytes moved each way, readable while the relay runs.
type Counters struct {
	AToB, BToA atomic.Int64
}

// Result is the outcome of Relay.
type Result struct {
	AToB, BToA int64
	// Err is the first error of either direction (nil when both ended with
	// EOF); the error the other direction got because of the abort is
	// not reported.
	Err error
}

// Relay copies a→b and b→a until both directions end, then closes both
// connections. c may be nil.
func Relay(a, b net.Conn, c *Counters) Result {
	if c == nil {
		c = new(Counters)
	}
	var (
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() {
			firstErr = err
			Abort(a)
			Abort(b)
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		half(b, a, &c.AToB, fail)
	}()
	half(a, b, &c.BToA, fail)
	<-done
	a.Close()
	b.Close()
	return Result{AToB: c.AToB.Load(), BToA: c.BToA.Load(), Err: firstErr}
}

// half copies src to dst, then half-closes dst; on error it calls fail.
func half(dst, src net.Conn, n *atomic.Int64, fail func(error)) {
	if err := Copy(dst, src, n); err != nil {
		fail(err)
		return
	}
	if err := closeWrite(dst); err != nil {
		fail(err)
	}
}

// Copy copies src to dst until src's EOF, adding to n, using the fastest
// path the pair allows. It does not close or half-close anything.
func Copy(dst, src net.Conn, n *atomic.Int64) error {
	switch s := src.(type) {
	case *hbone.Stream:
		// dst unwrapped, so that the stream's read loop can write small
		// frames to a TCP dst itself (no goroutine hand-off per frame).
		_, err := s.CopyTo(dst, n)
		return err
	case *net.TCPConn:
		if d, ok := dst.(*net.TCPConn); ok {
			m, err := d.ReadFrom(s) // splice(2) on Linux
			n.Add(m)
			return err
		}
	}
	if d, ok := dst.(*hbone.Stream); ok {
		// src unwrapped, so that an idle TCP src holds no buffer.
		_, err := d.CopyFrom(src, n)
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	_, err := io.CopyBuffer(countWriter{dst, n}, onlyReader{src}, *bp)
	return err
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Resetter is a connection that can be aborted so its peer sees a reset
// rather than an end of stream.
type Resetter interface{ Reset() error }

// An HBONE stream aborts with RST_STREAM(CANCEL) and no END_STREAM, so the
// far ztunnel's relay fails too and resets its TCP side.
var _ Resetter = (*hbone.Stream)(nil)

// Abort closes c so that its peer sees a reset: SO_LINGER 0 on a TCP
// socket (RST instead of FIN); on a connection with a Reset method (an
// *hbone.Stream), Reset, which also releases it. Either way a client's
// abort reaches the pod as a reset, and a pod's reset reaches the client,
// instead of a FIN that would make a truncated transfer look complete.
func Abort(c net.Conn) {
	if r, ok := c.(Resetter); ok {
		_ = r.Reset()
		return
	}
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = c.Close()
}

// IsClosed reports whether err is the result of a connection closed locally.
func IsClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, hbone.ErrClosed)
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	m, err := c.w.Write(p)
	c.n.Add(int64(m))
	return m, err
}

// onlyReader hides src's WriterTo so io.CopyBuffer uses our buffer.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
