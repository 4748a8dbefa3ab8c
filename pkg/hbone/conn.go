package hbone

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Defaults of the HTTP/2 settings; see Limits.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultStreamWindow         = 4 << 20
	DefaultConnWindow           = 16 << 20
	DefaultMaxFrameSize         = 256 << 10
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultReadIdleTimeout      = 30 * time.Second
	DefaultPingTimeout          = 15 * time.Second

	initialWindow   = 65535 // RFC 9113 initial flow-control window
	maxWindow       = 1<<31 - 1
	bufWriterSize   = 4 << 10
	maxClientStream = 1<<31 - 1
)

// Limits are the HTTP/2 tuning knobs shared by Server and Client. Zero
// fields take the defaults above.
type Limits struct {
	// MaxConcurrentStreams caps the streams per connection (server: the
	// SETTINGS value it advertises; client: streams it puts on one
	// connection before opening another). Default 100.
	MaxConcurrentStreams uint32
	// StreamWindow and ConnWindow are the receive flow-control windows
	// granted to the peer. Defaults 4 MiB and 16 MiB.
	StreamWindow int32
	ConnWindow   int32
	// MaxFrameSize is the largest frame payload accepted. Default 256 KiB.
	MaxFrameSize uint32
	// MaxHeaderBytes limits a decoded header block. Default 16 KiB.
	MaxHeaderBytes uint32
	// ReadIdleTimeout: after this long without a frame from the peer a PING
	// is sent; without an answer within PingTimeout the connection is
	// closed and its streams fail. Defaults 30 s and 15 s; negative
	// disables the health check.
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// IdleTimeout closes a connection that has had no stream for this long.
	// Zero means never (server) or 5 minutes (client, see ClientConfig).
	IdleTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if l.StreamWindow <= 0 {
		l.StreamWindow = DefaultStreamWindow
	}
	if l.ConnWindow < initialWindow {
		l.ConnWindow = DefaultConnWindow
	}
	if l.MaxFrameSize < 16<<10 || l.MaxFrameSize > 1<<24-1 {
		l.MaxFrameSize = DefaultMaxFrameSize
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.ReadIdleTimeout == 0 {
		l.ReadIdleTimeout = DefaultReadIdleTimeout
	}
	if l.PingTimeout <= 0 {
		l.PingTimeout = DefaultPingTimeout
	}
	return l
}

// connHooks are the role-specific parts of a connection.
type connHooks interface {
	// onHeaders handles a HEADERS frame; called on the read loop with c.mu
	// not held.
	onHeaders(c *conn, f *http2.MetaHeadersFrame) error
	// onIdle is called (without c.mu) when the stream count drops to zero.
	onIdle(c *conn)
	// onClose is called once when the connection is closed.
	onClose(c *conn)
}

// conn is one HTTP/2 connection carrying CONNECT streams, either side.
type conn struct {
	nc     net.Conn
	cork   *corkConn // under nc's TLS, if any
	client bool
	cert   *tls.Certificate // client: the certificate presented (set before the pool sees c)
	lim    Limits
	hooks  connHooks
	stats  *counters
	wg     *sync.WaitGroup // owner's; counts the read and write loops
	ctx    context.Context
	cancel context.CancelFunc

	fr *http2.Framer
	rd budgetReader // the Framer's reader: nc, with a budget per header block

	// wmu serializes frame writes and the hpack encoder.
	wmu  sync.Mutex
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	werr error

	mu                sync.Mutex
	streams           map[uint32]*Stream
	nextID            uint32 // client: next stream id
	lastPeerID        uint32 // server: highest stream id opened by the peer
	reserved          int    // client: slots promised by the pool
	peerMaxStreams    uint32
	peerInitialWindow int32
	peerMaxFrame      uint32
	sendWindow        int64
	recvUnacked       int32 // consumed, not yet returned with WINDOW_UPDATE
	recvAvail         int64 // connection window the peer may still use
	goAwayRecv        bool
	goAwaySent        bool
	closed            bool
	closeErr          error
	pingData          [8]byte
	pingOutstanding   bool
	idleTimer         *time.Timer
	healthTimer       *time.Timer
	lastRead          atomic.Int64
	ctrl              chan func()
	done              chan struct{}
}

func newConn(nc net.Conn, cork *corkConn, client bool, lim Limits, hooks connHooks, stats *counters, wg *sync.WaitGroup) *conn {
	if cork != nil {
		cork.cork()
	}
	c := &conn{
		nc:                nc,
		cork:              cork,
		client:            client,
		lim:               lim,
		hooks:             hooks,
		stats:             stats,
		wg:                wg,
		streams:           make(map[uint32]*Stream),
		nextID:            1,
		peerMaxStreams:    math.MaxUint32,
		peerInitialWindow: initialWindow,
		peerMaxFrame:      16 << 10,
		sendWindow:        initialWindow,
		recvAvail:         int64(lim.ConnWindow),
		ctrl:              make(chan func(), 32),
		done:              make(chan struct{}),
	}
	if client {
		c.peerMaxStreams = lim.MaxConcurrentStreams // until the server's SETTINGS
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// Small control frames are coalesced in bw; a large DATA frame finds bw
	// empty and goes straight to TLS. Reads need no bufio: tls.Conn holds a
	// decrypted record, and frame payloads are read straight into the
	// Framer's buffer.
	c.bw = bufio.NewWriterSize(nc, bufWriterSize)
	c.rd = budgetReader{r: nc, left: -1}
	c.fr = http2.NewFramer(c.bw, &c.rd)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(lim.MaxFrameSize)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = lim.MaxHeaderBytes
	c.henc = hpack.NewEncoder(&c.hbuf)
	stats.conns.Add(1)
	return c
}

// start writes the preface (client) and SETTINGS, and starts the loops.
func (c *conn) start() error {
	c.wmu.Lock()
	if c.client {
		c.bw.WriteString(http2.ClientPreface)
	}
	st := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.lim.StreamWindow)},
		{ID: http2.SettingMaxFrameSize, Val: c.lim.MaxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: c.lim.MaxHeaderBytes},
	}
	if c.client {
		st = append(st, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	} else {
		st = append(st, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.lim.MaxConcurrentStreams})
	}
	c.fr.WriteSettings(st...)
	if inc := c.lim.ConnWindow - initialWindow; inc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(inc))
	}
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		c.closeWithError(err)
		return err
	}
	c.lastRead.Store(time.Now().UnixNano())
	if c.lim.ReadIdleTimeout > 0 {
		c.mu.Lock()
		c.healthTimer = time.AfterFunc(c.lim.ReadIdleTimeout, c.healthCheck)
		c.mu.Unlock()
	}
	c.armIdle()
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.writeLoop() }()
	go func() { defer c.wg.Done(); c.readLoop() }()
	return nil
}

// flushLocked flushes bw; wmu must be held. A write error is sticky and
// closes the connection.
func (c *conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	err := c.bw.Flush()
	if err == nil && c.cork != nil {
		err = c.cork.flush()
	}
	if err != nil {
		werr := fmt.Errorf("%w: write: %w", ErrConnClosed, err)
		c.werr = werr
		// The read loop usually sees why (a TLS alert, a reset) and closes
		// the connection with that error; make sure it closes anyway.
		time.AfterFunc(time.Second, func() { c.closeWithError(werr) })
		return werr
	}
	return nil
}

// writeLoop writes the control frames the read loop queues, so that the read
// loop never blocks on the socket.
func (c *conn) writeLoop() {
	for {
		select {
		case f := <-c.ctrl:
			c.wmu.Lock()
			f()
			for more := true; more; {
				select {
				case f = <-c.ctrl:
					f()
				default:
					more = false
				}
			}
			c.flushLocked()
			c.wmu.Unlock()
		case <-c.done:
			return
		}
	}
}

// queue schedules a frame write (f runs with wmu held) on the write loop.
func (c *conn) queue(f func()) {
	select {
	case c.ctrl <- f:
	case <-c.done:
	}
}

func (c *conn) healthCheck() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	idle := time.Duration(time.Now().UnixNano() - c.lastRead.Load())
	if idle < c.lim.ReadIdleTimeout {
		c.healthTimer.Reset(c.lim.ReadIdleTimeout - idle)
		c.mu.Unlock()
		return
	}
	if c.pingOutstanding {
		c.mu.Unlock()
		c.closeWithError(fmt.Errorf("%w: no PING answer within %v, the peer or the path to it is gone", ErrConnClosed, c.lim.PingTimeout))
		return
	}
	c.pingOutstanding = true
	rand.Read(c.pingData[:])
	data := c.pingData
	c.healthTimer.Reset(c.lim.PingTimeout)
	c.mu.Unlock()
	c.queue(func() { c.fr.WritePing(false, data) })
}

// armIdle starts the idle timer if the connection carries no stream.
func (c *conn) armIdle() {
	if c.lim.IdleTimeout <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.streams) > 0 || c.reserved > 0 {
		return
	}
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(c.lim.IdleTimeout, c.idleFired)
	} else {
		c.idleTimer.Reset(c.lim.IdleTimeout)
	}
}

func (c *conn) idleFired() {
	c.mu.Lock()
	idle := !c.closed && len(c.streams) == 0 && c.reserved == 0
	c.mu.Unlock()
	if idle {
		c.shutdown()
	}
}

// shutdown sends GOAWAY and closes the connection once its streams are done.
func (c *conn) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	first := !c.goAwaySent
	c.goAwaySent = true
	last := c.lastPeerID
	n := len(c.streams)
	c.mu.Unlock()
	if first {
		c.wmu.Lock()
		c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
		c.flushLocked()
		c.wmu.Unlock()
	}
	if n == 0 {
		c.closeWithError(ErrConnClosed)
	}
}

// closeWithError tears the connection down and fails its streams with err.
func (c *conn) closeWithError(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeErr = err
	for id, s := range c.streams {
		if s.err == nil {
			s.err = err
		}
		delete(c.streams, id)
		c.stats.streams.Add(-1)
		s.cond.Broadcast()
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.healthTimer != nil {
		c.healthTimer.Stop()
	}
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	c.nc.Close()
	c.stats.conns.Add(-1)
	c.hooks.onClose(c)
}

// removeStreamLocked forgets a stream that is done; c.mu held. It reports
// whether the connection became idle.
func (c *conn) removeStreamLocked(s *Stream) (idle bool) {
	if s.removed {
		return false
	}
	s.removed = true
	if c.streams[s.id] == s {
		delete(c.streams, s.id)
		c.stats.streams.Add(-1)
	}
	return len(c.streams) == 0
}

func (c *conn) streamIdle() {
	c.mu.Lock()
	goAway := c.goAwaySent || c.goAwayRecv
	n := len(c.streams) + c.reserved
	c.mu.Unlock()
	if n > 0 {
		return
	}
	if goAway {
		c.closeWithError(ErrConnClosed)
		return
	}
	c.armIdle()
	c.hooks.onIdle(c)
}

func (c *conn) readLoop() {
	gotFrame, err := c.readFrames()
	if c.client && !gotFrame {
		// With TLS 1.3 the server checks our certificate after our side of
		// the handshake is done: its verdict arrives here.
		c.closeWithError(&DialError{Peer: c.nc.RemoteAddr().String(), Op: "tls", Err: fmt.Errorf("%w: %w", ErrConnClosed, err)})
		return
	}
	c.closeWithError(fmt.Errorf("%w: %w", ErrConnClosed, err))
}

func (c *conn) readFrames() (gotFrame bool, _ error) {
	for ; ; gotFrame = true {
		fh, err := c.fr.ReadFrameHeader()
		var f http2.Frame
		if err == nil {
			if fh.Type == http2.FrameData && fh.Flags&http2.FlagDataPadded == 0 && fh.StreamID != 0 && fh.Length >= directReadMin {
				c.lastRead.Store(time.Now().UnixNano())
				if err := c.readDataDirect(fh); err != nil {
					return true, err
				}
				continue
			}
			if fh.Type == http2.FrameHeaders && fh.Flags&http2.FlagHeadersEndHeaders == 0 {
				// The Framer reads the CONTINUATION frames itself.
				c.rd.left = headerBlockWireLimit(c.lim)
			}
			f, err = c.fr.ReadFrameForHeader(fh)
			c.rd.left = -1
		}
		if errors.Is(err, errHeaderBlockTooLarge) {
			c.goAwayError(http2.ErrCodeEnhanceYourCalm)
			return true, fmt.Errorf("peer sent a header block of over %d bytes on the wire (a CONTINUATION flood?)", headerBlockWireLimit(c.lim))
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.goAwayError(http2.ErrCode(ce))
			}
			if errors.Is(err, io.EOF) {
				return gotFrame, errors.New("peer closed the connection")
			}
			return gotFrame, err
		}
		c.lastRead.Store(time.Now().UnixNano())
		switch f := f.(type) {
		case *http2.DataFrame:
			if err := c.onData(f); err != nil {
				return true, err
			}
		case *http2.MetaHeadersFrame:
			if err := c.hooks.onHeaders(c, f); err != nil {
				return true, err
			}
		case *http2.SettingsFrame:
			if err := c.onSettings(f); err != nil {
				return true, err
			}
		case *http2.WindowUpdateFrame:
			if err := c.onWindowUpdate(f); err != nil {
				return true, err
			}
		case *http2.PingFrame:
			if f.IsAck() {
				c.mu.Lock()
				if c.pingOutstanding && f.Data == c.pingData {
					c.pingOutstanding = false
				}
				c.mu.Unlock()
			} else {
				data := f.Data
				c.queue(func() { c.fr.WritePing(true, data) })
			}
		case *http2.RSTStreamFrame:
			c.mu.Lock()
			s := c.streams[f.StreamID]
			idle := false
			if s != nil {
				if s.err == nil {
					s.err = resetError{code: f.ErrCode, remote: true}
					if f.ErrCode == http2.ErrCodeRefusedStream && !s.gotResponse {
						s.err = errRetry
					}
				}
				idle = c.removeStreamLocked(s)
				s.cond.Broadcast()
			}
			c.mu.Unlock()
			if idle {
				c.streamIdle()
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			c.goAwayError(http2.ErrCodeProtocol)
			return true, errors.New("peer sent PUSH_PROMISE")
		}
	}
}

// errHeaderBlockTooLarge ends a header block that goes on for too long.
var errHeaderBlockTooLarge = errors.New("header block too large")

// headerBlockWireLimit bounds the bytes of one header block on the wire,
// frame headers included: twice the decoded limit (HPACK never makes a
// block much larger than what it decodes to) plus room for framing. x/net's
// Framer already ends the connection when the decoded fields go well past
// MaxHeaderBytes, but not a block that decodes to nothing, such as an
// endless series of empty CONTINUATION frames that would keep the read loop
// inside one header block for ever.
func headerBlockWireLimit(lim Limits) int64 {
	return 2*int64(lim.MaxHeaderBytes) + 16<<10
}

// budgetReader reads from r; while left >= 0 it reads at most left more
// bytes and then fails with errHeaderBlockTooLarge. Only the read loop uses
// it.
type budgetReader struct {
	r    io.Reader
	left int64 // -1: no budget
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return b.r.Read(p)
	}
	if b.left == 0 {
		return 0, errHeaderBlockTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (c *conn) goAwayError(code http2.ErrCode) {
	c.mu.Lock()
	c.goAwaySent = true
	last := c.lastPeerID
	c.mu.Unlock()
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	var henc uint32 = math.MaxUint32
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = s.Val
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerInitialWindow)
			c.peerInitialWindow = int32(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				st.cond.Broadcast()
			}
		case http2.SettingHeaderTableSize:
			henc = s.Val
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			c.goAwayError(http2.ErrCode(ce))
		}
		return fmt.Errorf("peer SETTINGS: %w", err)
	}
	c.queue(func() {
		if henc != math.MaxUint32 {
			c.henc.SetMaxDynamicTableSize(min(henc, 4096))
		}
		c.fr.WriteSettingsAck()
	})
	return nil
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			return errors.New("peer overflowed the connection flow-control window")
		}
		for _, s := range c.streams {
			if s.waitingSend {
				s.cond.Broadcast()
			}
		}
		return nil
	}
	if s := c.streams[f.StreamID]; s != nil {
		s.sendWindow += int64(f.Increment)
		if s.sendWindow > maxWindow {
			if s.err == nil {
				s.err = resetError{code: http2.ErrCodeFlowControl}
			}
			s.cond.Broadcast()
			id := s.id
			c.queue(func() { c.fr.WriteRSTStream(id, http2.ErrCodeFlowControl) })
			return nil
		}
		s.cond.Broadcast()
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	n := int32(f.Length) // includes padding
	data := f.Data()
	c.mu.Lock()
	if c.recvAvail -= int64(n); c.recvAvail < 0 {
		c.mu.Unlock()
		c.goAwayError(http2.ErrCodeFlowControl)
		return errors.New("peer overran the connection flow-control window")
	}
	s := c.streams[f.StreamID]
	if s == nil || s.recvEnd || s.err != nil || s.closed {
		// Not ours to keep: give the connection window back at once.
		c.mu.Unlock()
		if f.StreamID != 0 && !c.client && f.StreamID > c.peerIDSnapshot() {
			c.goAwayError(http2.ErrCodeProtocol)
			return errors.New("peer sent DATA on an idle stream")
		}
		c.returnConnWindow(n)
		return nil
	}
	if n > s.recvWindow {
		c.mu.Unlock()
		c.goAwayError(http2.ErrCodeFlowControl)
		return fmt.Errorf("peer overran the stream flow-control window of stream %d", f.StreamID)
	}
	s.recvWindow -= n
	pad := n - int32(len(data))
	wake := true
	var sinc, cinc int32
	if s.sink != nil && s.sinkIdle && !s.sinkBusy && s.rbuf.n == 0 && len(data) > 0 {
		data, sinc, cinc = c.deliverDirect(s, data) // unlocks and locks c.mu
		// All written: CopyTo has nothing to do, unless the stream ends
		// or the write failed.
		wake = len(data) > 0 || s.sinkErr != nil || s.closed || s.err != nil || s.sinkWait
		s.sinkWait = false
	}
	if !s.closed {
		s.rbuf.write(data)
	}
	idle := false
	if f.StreamEnded() {
		wake = true
		s.recvEnd = true
		if s.sentEnd {
			idle = c.removeStreamLocked(s)
		}
	}
	if wake {
		s.cond.Broadcast()
	}
	c.mu.Unlock()
	if sinc > 0 || cinc > 0 {
		id := s.id
		c.queue(func() {
			if sinc > 0 {
				c.fr.WriteWindowUpdate(id, uint32(sinc))
			}
			if cinc > 0 {
				c.fr.WriteWindowUpdate(0, uint32(cinc))
			}
		})
	}
	if pad > 0 {
		c.returnConnWindow(pad)
	}
	if idle {
		c.streamIdle()
	}
	return nil
}

// deliverDirect writes data to the stream's sink from the read loop (see
// Stream.CopyTo) and returns what the socket did not take, and the window
// increments to send for what it did. c.mu is held on entry and on return,
// released during the write; meanwhile sinkBusy keeps CopyTo from writing,
// so bytes stay in order.
func (c *conn) deliverDirect(s *Stream, data []byte) (rest []byte, sinc, cinc int32) {
	s.sinkBusy = true
	k := s.sink
	c.mu.Unlock()
	n, err := k.tryWrite(data)
	c.mu.Lock()
	s.sinkBusy = false
	s.sinkBytes += int64(n)
	if err != nil && s.sinkErr == nil {
		s.sinkErr = fmt.Errorf("write: %w", err)
	}
	// Written bytes were consumed; if the stream was closed meanwhile, so
	// were the rest (Close discarded only what was buffered).
	rest = data[n:]
	if s.closed || err != nil {
		n, rest = len(data), nil
	}
	sinc, cinc = s.consumedLocked(n)
	return rest, sinc, cinc
}

// directReadMin is the DATA payload size from which the read loop reads
// straight into the stream's receive chunks instead of through the Framer's
// buffer (saving a copy); smaller frames are copied so that a peer sending
// tiny frames cannot make a stream hold many mostly empty chunks.
const directReadMin = chunkSize / 2

// readDataDirect reads the payload of an unpadded DATA frame into fresh
// receive chunks and hands them to the stream.
func (c *conn) readDataDirect(fh http2.FrameHeader) error {
	n := int32(fh.Length)
	var arr [16]*chunk
	chunks := arr[:0]
	for left := int(n); left > 0; {
		ch := chunkPool.Get().(*chunk)
		m := min(left, chunkSize)
		ch.r, ch.w = 0, m
		chunks = append(chunks, ch)
		left -= m
		if _, err := io.ReadFull(c.nc, ch.b[:m]); err != nil {
			for _, ch := range chunks {
				chunkPool.Put(ch)
			}
			return err
		}
	}
	end := fh.Flags&http2.FlagDataEndStream != 0
	c.mu.Lock()
	if c.recvAvail -= int64(n); c.recvAvail < 0 {
		c.mu.Unlock()
		for _, ch := range chunks {
			chunkPool.Put(ch)
		}
		c.goAwayError(http2.ErrCodeFlowControl)
		return errors.New("peer overran the connection flow-control window")
	}
	s := c.streams[fh.StreamID]
	if s == nil || s.recvEnd || s.err != nil || s.closed {
		c.mu.Unlock()
		for _, ch := range chunks {
			chunkPool.Put(ch)
		}
		if !c.client && fh.StreamID > c.peerIDSnapshot() {
			c.goAwayError(http2.ErrCodeProtocol)
			return errors.New("peer sent DATA on an idle stream")
		}
		c.returnConnWindow(n)
		return nil
	}
	if n > s.recvWindow {
		c.mu.Unlock()
		for _, ch := range chunks {
			chunkPool.Put(ch)
		}
		c.goAwayError(http2.ErrCodeFlowControl)
		return fmt.Errorf("peer overran the stream flow-control window of stream %d", fh.StreamID)
	}
	s.recvWindow -= n
	s.rbuf.add(chunks, int(n))
	idle := false
	if end {
		s.recvEnd = true
		if s.sentEnd {
			idle = c.removeStreamLocked(s)
		}
	}
	s.cond.Broadcast()
	c.mu.Unlock()
	if idle {
		c.streamIdle()
	}
	return nil
}

func (c *conn) peerIDSnapshot() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPeerID
}

// connConsumedLocked accounts n bytes of connection window as free again
// and returns the WINDOW_UPDATE increment to send, in batches of a quarter
// window. c.mu held.
func (c *conn) connConsumedLocked(n int32) (inc int32) {
	c.recvUnacked += n
	if c.recvUnacked >= c.lim.ConnWindow/4 {
		inc, c.recvUnacked = c.recvUnacked, 0
		c.recvAvail += int64(inc)
	}
	return inc
}

// returnConnWindow hands n bytes of connection window back to the peer from
// the read loop (via the write loop).
func (c *conn) returnConnWindow(n int32) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	inc := c.connConsumedLocked(n)
	c.mu.Unlock()
	if inc > 0 {
		c.queue(func() { c.fr.WriteWindowUpdate(0, uint32(inc)) })
	}
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.goAwayRecv = true
	var idle bool
	if c.client {
		for _, s := range c.streams {
			if s.id > f.LastStreamID {
				if s.err == nil {
					s.err = errRetry
				}
				idle = c.removeStreamLocked(s) || idle
				s.cond.Broadcast()
			}
		}
	}
	n := len(c.streams)
	c.mu.Unlock()
	if n == 0 || idle {
		c.closeWithError(fmt.Errorf("%w: peer sent GOAWAY (%v)", ErrConnClosed, f.ErrCode))
	}
}

// resetStream resets a stream after a stream error found while reading.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	s := c.streams[id]
	idle := false
	if s != nil {
		if s.err == nil {
			s.err = resetError{code: code}
		}
		idle = c.removeStreamLocked(s)
		s.cond.Broadcast()
	}
	if !c.client && id > c.lastPeerID {
		c.lastPeerID = id
	}
	c.mu.Unlock()
	c.queue(func() { c.fr.WriteRSTStream(id, code) })
	if idle {
		c.streamIdle()
	}
}

// writeHeadersLocked encodes fields and writes them as HEADERS (+
// CONTINUATION) frames; wmu held.
func (c *conn) writeHeadersLocked(id uint32, endStream bool, fields []hpack.HeaderField) error {
	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	c.mu.Lock()
	maxFrame := int(c.peerMaxFrame)
	c.mu.Unlock()
	first := true
	for first || len(block) > 0 {
		chunk := block
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		block = block[len(chunk):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// load is the connection's load, for the pool.
func (c *conn) load() connLoad {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := min(c.lim.MaxConcurrentStreams, c.peerMaxStreams)
	return connLoad{
		usable: !c.closed && !c.goAwayRecv && !c.goAwaySent && c.nextID < maxClientStream,
		active: len(c.streams) + c.reserved,
		max:    int(limit),
	}
}

// counters are shared by the connections of a Server or a Client.
type counters struct {
	conns   atomic.Int64
	streams atomic.Int64
}

// Stats is a snapshot of a Server's or Client's connections.
type Stats struct {
	Conns   int64 // open HTTP/2 connections
	Streams int64 // open streams
}

func (c *counters) snapshot() Stats {
	return Stats{Conns: c.conns.Load(), Streams: c.streams.Load()}
}
