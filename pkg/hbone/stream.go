package hbone

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Stream is one HBONE tunnel: a CONNECT stream on a shared HTTP/2
// connection. It is a net.Conn whose Read and Write carry the tunnelled
// bytes, with CloseWrite for half-close. LocalAddr and RemoteAddr are those
// of the underlying HBONE connection.
//
// One goroutine may Read while another Writes; Close may be called from any
// goroutine and unblocks both.
type Stream struct {
	c    *conn
	id   uint32
	cond sync.Cond // L is &c.mu

	// receive side (c.mu)
	rbuf       recvBuf
	recvEnd    bool
	recvWindow int32 // window the peer may still use
	unacked    int32 // read by the user, not yet returned to the peer

	// send side (c.mu)
	sendWindow  int64
	sentEnd     bool
	waitingSend bool

	// ended (c.wmu): END_STREAM or RST_STREAM has gone to the framer, so a
	// Write that raced CloseWrite, Close or Reset must not send DATA after
	// it (a stream error for the peer).
	ended bool

	err         error // terminal error (reset, connection closed)
	closed      bool  // Close called
	removed     bool
	gotResponse bool // client: response HEADERS received; server: response written
	status      int

	rdeadline, wdeadline time.Time
	rtimer, wtimer       *time.Timer
}

var (
	_ net.Conn      = (*Stream)(nil)
	_ io.WriterTo   = (*Stream)(nil)
	_ io.ReaderFrom = (*Stream)(nil)
)

func newStream(c *conn, id uint32) *Stream {
	s := &Stream{c: c, id: id, recvWindow: c.lim.StreamWindow, sendWindow: int64(c.peerInitialWindow)}
	s.cond.L = &c.mu
	return s
}

// Read reads tunnelled bytes. It returns io.EOF once the peer half-closed
// and everything before was read.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := s.c
	c.mu.Lock()
	if err := s.waitDataLocked(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	n := s.rbuf.read(p)
	sinc, cinc := s.consumedLocked(n)
	c.mu.Unlock()
	c.writeWindowUpdates(s.id, sinc, cinc)
	return n, nil
}

// WriteTo copies received bytes to w until the peer half-closes (io.Copy
// uses it): received chunks go to w without a copy into a caller's buffer.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	c := s.c
	var total int64
	for {
		c.mu.Lock()
		if err := s.waitDataLocked(); err != nil {
			c.mu.Unlock()
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		ch := s.rbuf.pop()
		n := ch.w - ch.r
		sinc, cinc := s.consumedLocked(n)
		c.mu.Unlock()
		c.writeWindowUpdates(s.id, sinc, cinc)
		nw, err := w.Write(ch.b[ch.r:ch.w])
		chunkPool.Put(ch)
		total += int64(nw)
		if err != nil {
			return total, err
		}
	}
}

// ReadFrom sends everything read from r until io.EOF (io.Copy uses it),
// in frames that fill whole TLS records. It does not half-close.
func (s *Stream) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// copyBufSize makes one DATA frame (9-byte header + payload) exactly two
// full 16 KiB TLS records.
const copyBufSize = 2*16384 - 9

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// waitDataLocked waits until there are bytes to read; otherwise it returns
// io.EOF or the stream's error. c.mu held.
func (s *Stream) waitDataLocked() error {
	for s.rbuf.n == 0 {
		switch {
		case s.closed:
			return ErrClosed
		case s.recvEnd:
			return io.EOF
		case s.err != nil:
			return s.err
		case expired(s.rdeadline):
			return os.ErrDeadlineExceeded
		}
		s.cond.Wait()
	}
	return nil
}

// consumedLocked accounts n bytes handed to the user and returns the window
// to give back to the peer, in batches of a quarter window. c.mu held.
func (s *Stream) consumedLocked(n int) (sinc, cinc int32) {
	c := s.c
	if !s.recvEnd && s.err == nil {
		s.unacked += int32(n)
		if s.unacked >= c.lim.StreamWindow/4 {
			sinc, s.unacked = s.unacked, 0
			s.recvWindow += sinc
		}
	}
	return sinc, c.connConsumedLocked(int32(n))
}

// writeWindowUpdates sends WINDOW_UPDATE frames for a stream and the
// connection.
func (c *conn) writeWindowUpdates(id uint32, sinc, cinc int32) {
	if sinc <= 0 && cinc <= 0 {
		return
	}
	c.wmu.Lock()
	if sinc > 0 {
		c.fr.WriteWindowUpdate(id, uint32(sinc))
	}
	if cinc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(cinc))
	}
	c.flushLocked()
	c.wmu.Unlock()
}

// Write sends p through the tunnel, as DATA frames as large as flow control
// and the peer's frame size allow, flushed before it returns (and before it
// waits for flow-control window).
func (s *Stream) Write(p []byte) (int, error) {
	c := s.c
	written := 0
	unflushed := false
	for len(p) > 0 {
		c.mu.Lock()
		var allowed int64
		for {
			if err := s.writeErrLocked(); err != nil {
				c.mu.Unlock()
				if unflushed {
					c.flush()
				}
				return written, err
			}
			allowed = min(int64(len(p)), s.sendWindow, c.sendWindow, int64(c.peerMaxFrame))
			if allowed > 0 {
				break
			}
			if unflushed {
				// The peer must see what we sent to give window back.
				c.mu.Unlock()
				if err := c.flush(); err != nil {
					return written, err
				}
				unflushed = false
				c.mu.Lock()
				continue
			}
			s.waitingSend = true
			s.cond.Wait()
			s.waitingSend = false
		}
		s.sendWindow -= allowed
		c.sendWindow -= allowed
		c.mu.Unlock()

		last := int(allowed) == len(p)
		c.wmu.Lock()
		if s.ended {
			c.wmu.Unlock()
			return written, s.lostRace(allowed)
		}
		err := c.werr
		if err == nil {
			err = c.fr.WriteData(s.id, false, p[:allowed])
		}
		if err == nil && last {
			err = c.flushLocked()
		}
		c.wmu.Unlock()
		if err != nil {
			return written, err
		}
		unflushed = !last
		written += int(allowed)
		p = p[allowed:]
	}
	return written, nil
}

// flush writes out buffered frames.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// lostRace handles a Write that took n bytes of window and then found the
// stream ended by CloseWrite, Close or Reset from another goroutine: it gives
// the connection window back (the stream's is moot) and returns why the
// write failed.
func (s *Stream) lostRace(n int64) error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendWindow += n
	for _, o := range c.streams {
		if o.waitingSend {
			o.cond.Broadcast()
		}
	}
	if err := s.writeErrLocked(); err != nil {
		return err
	}
	return ErrClosed
}

func (s *Stream) writeErrLocked() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.sentEnd:
		return ErrWriteAfterCloseWrite
	case s.err != nil:
		return s.err
	case expired(s.wdeadline):
		return os.ErrDeadlineExceeded
	}
	return nil
}

// CloseWrite half-closes the stream: the peer reads io.EOF after the bytes
// already written, and this side can still Read.
func (s *Stream) CloseWrite() error {
	c := s.c
	c.mu.Lock()
	if s.sentEnd || s.err != nil || s.closed {
		err := s.err
		c.mu.Unlock()
		return err
	}
	s.sentEnd = true
	idle := false
	if s.recvEnd {
		idle = c.removeStreamLocked(s)
	}
	c.mu.Unlock()
	c.wmu.Lock()
	s.ended = true
	err := c.fr.WriteData(s.id, true, nil)
	if err == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if idle {
		c.streamIdle()
	}
	return err
}

// Close ends the stream in both directions. If this side has not
// half-closed, the peer reads io.EOF after the bytes already written; if the
// peer has not half-closed, the stream is reset so it stops sending. Unread
// bytes are discarded. To abort instead, so that the peer reads an error
// rather than io.EOF, use Reset.
func (s *Stream) Close() error {
	_ = s.shut(false)
	return nil
}

// Reset aborts the stream: it sends RST_STREAM(CANCEL) with no END_STREAM
// before it, so the peer's Read (after the bytes already received) and
// Write fail with an error matching ErrStreamReset instead of the peer
// reading io.EOF. This is how a relay passes a TCP RST on, and a truncated
// transfer never looks complete. Like Close it discards unread bytes,
// returns their flow-control window, takes the stream off its connection
// and makes a blocked or later Read or Write here fail with ErrClosed;
// Close after Reset does nothing.
//
// Nothing is sent when the stream already ended both ways, was reset by
// either side, or its connection is gone. The error is that of writing the
// frame (the connection broke).
func (s *Stream) Reset() error {
	if err := s.shut(true); err != nil {
		return fmt.Errorf("HBONE stream %d: reset: %w", s.id, err)
	}
	return nil
}

// shut implements Close (abort false) and Reset (abort true): it releases
// the stream's buffers, timers and place on the connection, then writes what
// the peer must see.
func (s *Stream) shut(abort bool) error {
	c := s.c
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return nil
	}
	s.closed = true
	live := s.err == nil
	var sendEnd, sendRST bool
	code := http2.ErrCodeCancel
	if abort {
		// Once both sides sent END_STREAM the stream is closed on the wire:
		// there is nothing left to abort.
		sendRST = live && !(s.sentEnd && s.recvEnd)
	} else {
		sendEnd = live && !s.sentEnd
		sendRST = live && !s.recvEnd
		if !c.client {
			code = http2.ErrCodeNo // RFC 9113 §8.1: the response is complete
		}
	}
	s.sentEnd = true
	discarded := int32(s.rbuf.n)
	s.rbuf.reset()
	if s.err == nil {
		s.err = ErrClosed
	}
	idle := c.removeStreamLocked(s)
	cinc := c.connConsumedLocked(discarded)
	if s.rtimer != nil {
		s.rtimer.Stop()
	}
	if s.wtimer != nil {
		s.wtimer.Stop()
	}
	s.cond.Broadcast()
	closed := c.closed
	c.mu.Unlock()
	var err error
	if !closed && (sendEnd || sendRST || cinc > 0) {
		c.wmu.Lock()
		s.ended = true
		if sendEnd {
			err = c.fr.WriteData(s.id, true, nil)
		}
		if sendRST && err == nil {
			err = c.fr.WriteRSTStream(s.id, code)
		}
		if cinc > 0 && err == nil {
			err = c.fr.WriteWindowUpdate(0, uint32(cinc))
		}
		if ferr := c.flushLocked(); err == nil {
			err = ferr
		}
		c.wmu.Unlock()
	}
	if idle {
		c.streamIdle()
	}
	return err
}

// LocalAddr is the local address of the HBONE connection.
func (s *Stream) LocalAddr() net.Addr { return s.c.nc.LocalAddr() }

// RemoteAddr is the peer address of the HBONE connection.
func (s *Stream) RemoteAddr() net.Addr { return s.c.nc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline makes a blocked or future Read fail with
// os.ErrDeadlineExceeded after t; the zero time clears it.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.rdeadline = t
	s.rtimer = s.armDeadline(s.rtimer, t)
	return nil
}

// SetWriteDeadline is SetReadDeadline for Write.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.wdeadline = t
	s.wtimer = s.armDeadline(s.wtimer, t)
	return nil
}

func (s *Stream) armDeadline(tm *time.Timer, t time.Time) *time.Timer {
	if tm != nil {
		tm.Stop()
	}
	if t.IsZero() {
		return tm
	}
	d := time.Until(t)
	if d <= 0 {
		s.cond.Broadcast()
		return tm
	}
	if tm == nil {
		return time.AfterFunc(d, func() {
			s.c.mu.Lock()
			s.cond.Broadcast()
			s.c.mu.Unlock()
		})
	}
	tm.Reset(d)
	return tm
}

func expired(t time.Time) bool { return !t.IsZero() && !time.Now().Before(t) }

// recvBuf holds received bytes in pooled chunks, so an idle stream holds no
// buffer at all. chunks[head:] are live; the slice's array is reused.
type recvBuf struct {
	chunks []*chunk
	head   int
	n      int
}

const chunkSize = 32 << 10

type chunk struct {
	b    [chunkSize]byte
	r, w int
}

var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

func (b *recvBuf) write(p []byte) {
	b.n += len(p)
	for len(p) > 0 {
		var last *chunk
		if k := len(b.chunks); k > b.head && b.chunks[k-1].w < chunkSize {
			last = b.chunks[k-1]
		} else {
			last = chunkPool.Get().(*chunk)
			last.r, last.w = 0, 0
			b.chunks = append(b.chunks, last)
		}
		n := copy(last.b[last.w:], p)
		last.w += n
		p = p[n:]
	}
}

// add appends full chunks read directly from the connection.
func (b *recvBuf) add(chunks []*chunk, n int) {
	b.chunks = append(b.chunks, chunks...)
	b.n += n
}

func (b *recvBuf) read(p []byte) int {
	total := 0
	for len(p) > 0 && b.head < len(b.chunks) {
		ch := b.chunks[b.head]
		n := copy(p, ch.b[ch.r:ch.w])
		ch.r += n
		p = p[n:]
		total += n
		if ch.r == ch.w {
			b.drop()
			chunkPool.Put(ch)
		}
	}
	b.n -= total
	return total
}

// pop removes and returns the first chunk; b.n > 0.
func (b *recvBuf) pop() *chunk {
	ch := b.chunks[b.head]
	b.drop()
	b.n -= ch.w - ch.r
	return ch
}

// drop forgets the first chunk.
func (b *recvBuf) drop() {
	b.chunks[b.head] = nil
	b.head++
	if b.head == len(b.chunks) {
		b.chunks, b.head = b.chunks[:0], 0
	}
}

func (b *recvBuf) reset() {
	for _, ch := range b.chunks[b.head:] {
		chunkPool.Put(ch)
	}
	b.chunks, b.head, b.n = nil, 0, 0
}
