package hbone

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
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

	rdl, wdl deadline // c.mu

	// direct delivery (c.mu), see WriteTo
	sink      *sink // set while WriteTo copies to a socket
	sinkIdle  bool  // WriteTo waits for data: the read loop may write to the sink
	sinkBusy  bool  // the read loop is writing to the sink
	sinkErr   error // the read loop's write to the sink failed
	sinkBytes int64 // written by the read loop during this WriteTo
	sinkWait  bool  // CopyTo waits for a direct write to finish
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
// See CopyTo.
func (s *Stream) WriteTo(w io.Writer) (int64, error) { return s.CopyTo(w, nil) }

// CopyTo is WriteTo that also adds the bytes to n (if not nil) as they are
// written. When w is a socket (a syscall.Conn such as *net.TCPConn) and
// this side is waiting for data, the connection's read loop writes small
// DATA frames (request/response traffic) to w itself, without blocking (on
// a full socket buffer the rest is left to CopyTo): that saves waking this
// goroutine, a goroutine hand-off, per frame. Bulk frames still go through
// this goroutine, so that reading and decrypting overlap with writing.
// Nothing else may write to w meanwhile.
func (s *Stream) CopyTo(w io.Writer, n *atomic.Int64) (int64, error) {
	c := s.c
	var total int64
	var sk *sink
	if sc, ok := w.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			sk = newSink(rc, n)
		}
	}
	c.mu.Lock()
	s.sink, s.sinkBytes = sk, 0
	defer func() {
		c.mu.Lock()
		s.sink, s.sinkIdle = nil, false
		c.mu.Unlock()
	}()
	for {
		s.sinkIdle = sk != nil
		err := s.waitDataLocked()
		s.sinkIdle = false
		if err == nil {
			err = s.sinkErr
		}
		if err != nil {
			total += s.sinkBytes
			c.mu.Unlock()
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		// Everything received so far goes out in one write (writev to a
		// socket): a large DATA frame spans several chunks.
		var popped [8]*chunk
		var vec [8][]byte
		k, m := 0, 0
		for ; k < len(popped) && s.rbuf.n > 0; k++ {
			ch := s.rbuf.pop()
			popped[k], vec[k] = ch, ch.b[ch.r:ch.w]
			m += ch.w - ch.r
		}
		sinc, cinc := s.consumedLocked(m)
		c.mu.Unlock()
		c.writeWindowUpdates(s.id, sinc, cinc)
		var nw int64
		if k == 1 {
			var n1 int
			n1, err = w.Write(vec[0])
			nw = int64(n1)
		} else {
			bufs := net.Buffers(vec[:k])
			nw, err = bufs.WriteTo(w)
		}
		for _, ch := range popped[:k] {
			chunkPool.Put(ch)
		}
		total += nw
		if n != nil {
			n.Add(nw)
		}
		if err != nil {
			c.mu.Lock()
			total += s.sinkBytes
			c.mu.Unlock()
			return total, err
		}
		c.mu.Lock()
	}
}

// sink is the socket CopyTo writes to, for the read loop's direct writes.
// Only the read loop uses it (under the stream's sinkBusy), so tryWrite's
// state lives here and the callback is bound once: no allocation per write.
type sink struct {
	rc syscall.RawConn
	n  *atomic.Int64
	fn func(fd uintptr) bool // k.write

	p       []byte
	written int
	werr    error
}

func newSink(rc syscall.RawConn, n *atomic.Int64) *sink {
	k := &sink{rc: rc, n: n}
	k.fn = k.write
	return k
}

// tryWrite writes as much of p as the socket takes without blocking.
func (k *sink) tryWrite(p []byte) (int, error) {
	k.p, k.written, k.werr = p, 0, nil
	err := k.rc.Write(k.fn)
	written, werr := k.written, k.werr
	k.p, k.werr = nil, nil
	if werr == nil {
		werr = err
	}
	if k.n != nil {
		k.n.Add(int64(written))
	}
	return written, werr
}

func (k *sink) write(fd uintptr) bool {
	for k.written < len(k.p) {
		m, err := syscall.Write(int(fd), k.p[k.written:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				k.werr = err
			}
			break
		}
		k.written += m
	}
	return true // never wait for the socket
}

// ReadFrom sends everything read from r until io.EOF (io.Copy uses it),
// in frames that fill whole TLS records. It does not half-close. See
// CopyFrom.
func (s *Stream) ReadFrom(r io.Reader) (int64, error) { return s.CopyFrom(r, nil) }

// CopyFrom is ReadFrom that also adds the bytes to n (if not nil) as they
// are read. It reads with a small buffer, and with a large one while reads
// fill the small one (bulk data: fewer, larger frames, so fewer syscalls and
// wake-ups on both ends). When r is a socket (a syscall.Conn such as
// *net.TCPConn) it reads through its RawConn and takes a buffer only once
// the socket has data: a quiet stream (an idle keep-alive connection) holds
// no buffer at all, for the same one read syscall per arrival.
func (s *Stream) CopyFrom(r io.Reader, n *atomic.Int64) (int64, error) {
	if sc, ok := r.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return s.copyFromRaw(rc, r, n)
		}
	}
	small := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufPool.Put(large)
		}
	}()
	buf := *small
	var total int64
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if n != nil {
				n.Add(int64(m))
			}
			if _, werr := s.Write(buf[:m]); werr != nil {
				return total, werr
			}
			total += int64(m)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		switch {
		case m == len(buf) && large == nil:
			large = largeBufPool.Get().(*[]byte)
			buf = *large
		case m < copyBufSize && large != nil:
			largeBufPool.Put(large)
			large, buf = nil, *small
		}
	}
}

// copyFromRaw is CopyFrom's loop for a socket; conn is the same socket as
// a net.Conn, for its addresses in errors.
func (s *Stream) copyFromRaw(rc syscall.RawConn, conn io.Reader, n *atomic.Int64) (int64, error) {
	src := &source{}
	src.fn = src.read
	defer src.release()
	var total int64
	for {
		src.n, src.err = 0, nil
		err := rc.Read(src.fn)
		if err == nil && src.err != nil {
			err = readError(conn, src.err)
		}
		m := src.n
		if m > 0 {
			if n != nil {
				n.Add(int64(m))
			}
			_, werr := s.Write((*src.buf)[:m])
			if werr != nil {
				return total, werr
			}
			total += int64(m)
		}
		full := src.buf != nil && m == len(*src.buf)
		src.release()
		if err != nil {
			return total, err
		}
		if m == 0 {
			return total, nil // EOF
		}
		switch {
		case full && !src.large:
			src.large = true
		case m < copyBufSize && src.large:
			src.large = false
		}
	}
}

// source is copyFromRaw's read callback and its results, bound once (no
// allocation per read).
type source struct {
	fn    func(fd uintptr) bool // read
	buf   *[]byte               // held from a read that got data until release
	large bool                  // read into a large buffer
	n     int
	err   error
}

// read takes a buffer and reads; on EAGAIN it gives the buffer back and
// returns false, so the runtime waits for the socket without it.
func (k *source) read(fd uintptr) bool {
	if k.buf == nil {
		if k.large {
			k.buf = largeBufPool.Get().(*[]byte)
		} else {
			k.buf = copyBufPool.Get().(*[]byte)
		}
	}
	for {
		m, err := syscall.Read(int(fd), *k.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			k.release()
			return false
		case err != nil:
			k.err = err
		default:
			k.n = m
		}
		return true
	}
}

func (k *source) release() {
	if k.buf == nil {
		return
	}
	if len(*k.buf) == largeBufSize {
		largeBufPool.Put(k.buf)
	} else {
		copyBufPool.Put(k.buf)
	}
	k.buf = nil
}

// readError wraps a read(2) errno as net.Conn.Read would.
func readError(c io.Reader, errno error) error {
	op := &net.OpError{Op: "read", Err: os.NewSyscallError("read", errno)}
	if nc, ok := c.(net.Conn); ok {
		op.Net, op.Source, op.Addr = nc.LocalAddr().Network(), nc.LocalAddr(), nc.RemoteAddr()
	}
	return op
}

// copyBufSize makes one DATA frame (9-byte header + payload) exactly two
// full 16 KiB TLS records, largeBufSize eight.
const (
	copyBufSize  = 2*16384 - 9
	largeBufSize = 8*16384 - 9
)

var (
	copyBufPool  = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	largeBufPool = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
)

// waitDataLocked waits until there are bytes to read (and no direct write
// of the read loop is under way, see CopyTo); otherwise it returns io.EOF
// or the stream's error. c.mu held.
func (s *Stream) waitDataLocked() error {
	for s.rbuf.n == 0 || s.sinkBusy {
		if s.sinkBusy {
			s.sinkWait = true
			s.cond.Wait()
			continue
		}
		switch {
		case s.closed:
			return ErrClosed
		case s.recvEnd:
			return io.EOF
		case s.err != nil:
			return s.err
		case s.sinkErr != nil:
			return s.sinkErr
		case expired(s.rdl.at):
			return os.ErrDeadlineExceeded
		}
		s.rdl.wait(s)
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
			s.wdl.wait(s)
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
	case expired(s.wdl.at):
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
	s.rdl.stop()
	s.wdl.stop()
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
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.rdl.set(s, t)
	s.wdl.set(s, t)
	return nil
}

// SetReadDeadline makes a blocked or future Read fail with
// os.ErrDeadlineExceeded after t; the zero time clears it.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.rdl.set(s, t)
	return nil
}

// SetWriteDeadline is SetReadDeadline for Write.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.wdl.set(s, t)
	return nil
}

// deadline is a Read or Write deadline. Setting one costs no timer
// operation (net/http sets several per request): the timer is armed only
// when an operation is about to block, is reused, and is left running when
// the deadline moves later or is cleared, firing at worst one spurious
// wake-up that re-arms it. Operations check the deadline themselves when
// they start and each time they wake. All fields are guarded by c.mu.
type deadline struct {
	at      time.Time   // zero: no deadline
	armed   time.Time   // when the timer fires; zero: not armed
	timer   *time.Timer // created on the first wait with a deadline
	waiting int         // operations blocked on this deadline
}

// set changes the deadline; a blocked operation is woken (at once, or by a
// timer armed earlier) if the new deadline is sooner than it knew.
func (d *deadline) set(s *Stream, t time.Time) {
	d.at = t
	if d.waiting > 0 {
		d.arm(s)
	}
}

// wait blocks on s.cond with the timer armed to wake it by the deadline.
func (d *deadline) wait(s *Stream) {
	d.arm(s)
	d.waiting++
	s.cond.Wait()
	d.waiting--
}

// arm makes sure s.cond is broadcast by d.at.
func (d *deadline) arm(s *Stream) {
	if d.at.IsZero() || (!d.armed.IsZero() && !d.armed.After(d.at)) {
		return
	}
	dur := time.Until(d.at)
	if dur <= 0 {
		s.cond.Broadcast()
		return
	}
	d.armed = d.at
	if d.timer == nil {
		d.timer = time.AfterFunc(dur, func() {
			s.c.mu.Lock()
			d.armed = time.Time{}
			s.cond.Broadcast()
			s.c.mu.Unlock()
		})
		return
	}
	d.timer.Reset(dur)
}

// stop releases the timer (the stream is done).
func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
	d.armed = time.Time{}
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
