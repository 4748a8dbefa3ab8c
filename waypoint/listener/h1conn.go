package listener

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/ambient-mesh/ambient/pkg/hbone"
)

// Limits of the lean HTTP/1.1 path (those of the net/http server too).
const (
	idleTimeout       = 5 * time.Minute
	readHeaderTimeout = 30 * time.Second
	maxHeaderBytes    = 64 << 10
	// maxDrainBody is how much of a request body the handler left unread
	// is discarded to keep the tunnel for the next request; more closes it.
	maxDrainBody = 256 << 10
	// watchAfter is how long a request runs before a reader watches the
	// tunnel for the client going away (net/http does so for every
	// request, which costs a goroutine hand-off and deadlines each time).
	watchAfter = 500 * time.Millisecond
)

// h2Preface starts every HTTP/2 connection with prior knowledge.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// isHTTP2 reports whether the tunnel starts with the HTTP/2 preface,
// waiting for no more bytes than it takes to tell.
func isHTTP2(br *bufio.Reader) (bool, error) {
	if _, err := br.Peek(1); err != nil {
		return false, err
	}
	for {
		n := min(br.Buffered(), len(h2Preface))
		b, _ := br.Peek(n)
		if !bytes.HasPrefix(h2Preface, b) {
			return false, nil
		}
		if n == len(h2Preface) {
			return true, nil
		}
		if _, err := br.Peek(n + 1); err != nil {
			return false, err
		}
	}
}

// Connection states of an h1Conn.
const (
	stateIdle    int32 = iota // waiting for a request's first byte
	stateReading              // reading a request head
	stateActive               // serving a request
	stateClosed
)

// h1Conn serves HTTP/1.1 on one tunnel in the tunnel's goroutine: read a
// request, handle it, write the answer with one flush. Only a request that
// runs longer than watchAfter gets a second goroutine (to notice the
// client leaving); timeouts are checked by one timer per tunnel.
type h1Conn struct {
	l      *Listener
	s      *hbone.Stream
	t      *tunnel
	remote string
	lr     *limitedReader // under br
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    context.Context
	cancel context.CancelFunc

	state atomic.Int32
	since atomic.Int64 // unix nanoseconds of the last state change that a timeout counts from
	timer *time.Timer  // timeouts

	wmu       sync.Mutex // orders a 100 Continue against the response head
	w         h1Writer
	body      atomic.Pointer[h1Body] // current request's body, for the watcher
	watcher   *time.Timer
	watchDone chan struct{}
	stopping  atomic.Bool // the watcher is being stopped (its read error is ours)
}

// limitedReader caps how much of a request head is read.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// h1Set tracks the lean connections for Shutdown and Close.
type h1Set struct {
	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	closing bool
	empty   chan struct{} // closed when conns becomes empty, if a Shutdown waits
}

func (s *h1Set) add(c *h1Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*h1Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *h1Set) remove(c *h1Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
	s.mu.Unlock()
}

// shutdown closes idle connections (busy ones close after their current
// answer) and returns a channel closed once none is left.
func (s *h1Set) shutdown(closing *atomic.Bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	closing.Store(true)
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.s.Close()
		}
	}
	done := make(chan struct{})
	if len(s.conns) == 0 {
		close(done)
	} else if s.empty != nil {
		done = s.empty
	} else {
		s.empty = done
	}
	return done
}

// closeAll closes every connection at once.
func (s *h1Set) closeAll(closing *atomic.Bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	closing.Store(true)
	for c := range s.conns {
		c.s.Close()
	}
}

// serveH1 serves HTTP/1.1 on s (br already holds its first bytes) until
// the client or the listener ends it.
func (l *Listener) serveH1(ctx context.Context, s *hbone.Stream, br *bufio.Reader, lr *limitedReader, t *tunnel) {
	c := &h1Conn{l: l, s: s, t: t, remote: addrString(s.RemoteAddr()), lr: lr, br: br, bw: bufio.NewWriterSize(s, 16<<10),
		watchDone: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.since.Store(time.Now().UnixNano())
	if !l.h1.add(c) {
		c.cancel()
		s.Close()
		return
	}
	c.timer = time.AfterFunc(readHeaderTimeout, c.checkTimeout)
	c.watcher = time.AfterFunc(math.MaxInt64, c.watch)
	c.watcher.Stop()
	defer c.end()
	for c.next() {
	}
}

// end releases the connection.
func (c *h1Conn) end() {
	c.state.Store(stateClosed)
	c.timer.Stop()
	c.cancel()
	c.s.Close()
	c.l.h1.remove(c)
}

// checkTimeout closes a connection idle too long or slow to send a
// request head; it runs every readHeaderTimeout.
func (c *h1Conn) checkTimeout() {
	age := time.Duration(time.Now().UnixNano() - c.since.Load())
	switch c.state.Load() {
	case stateClosed:
		return
	case stateIdle:
		if age >= idleTimeout && c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.s.Close()
			return
		}
	case stateReading:
		if age >= readHeaderTimeout {
			c.s.Close()
			return
		}
	}
	c.timer.Reset(readHeaderTimeout)
}

// next reads and serves one request; it reports whether to wait for
// another.
func (c *h1Conn) next() bool {
	if _, err := c.br.Peek(1); err != nil {
		return false
	}
	if !c.state.CompareAndSwap(stateIdle, stateReading) {
		return false // Shutdown closed it
	}
	c.since.Store(time.Now().UnixNano())
	req, err := http.ReadRequest(c.br)
	if err != nil {
		c.badRequest(err)
		return false
	}
	c.lr.n = math.MaxInt64
	c.state.Store(stateActive)
	if code, msg := checkRequest(req); code != 0 {
		c.replyError(code, msg)
		return false
	}
	req.RemoteAddr = c.remote
	keep := c.serveOne(req)
	if !keep || c.ctx.Err() != nil {
		return false
	}
	c.lr.n = maxHeaderBytes + 4096
	c.since.Store(time.Now().UnixNano())
	c.state.Store(stateIdle)
	// Shutdown sets closing before it closes idle connections: either it
	// saw this one idle, or this sees closing.
	return !c.l.closing.Load()
}

// checkRequest refuses what net/http's server refuses after parsing a
// request head; it returns 0 when the request is fine.
func checkRequest(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	// http.ReadRequest moved the Host header to req.Host (an absolute
	// request target's host wins) and refused several Host headers.
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	if e := req.Header["Expect"]; len(e) > 0 && !(len(e) == 1 && strings.EqualFold(e[0], "100-continue")) {
		return http.StatusExpectationFailed, ""
	}
	return 0, ""
}

// badRequest answers a request head that could not be read, as net/http
// does: 431 over the size limit, nothing when the client went away, else
// 400.
func (c *h1Conn) badRequest(err error) {
	switch {
	case c.lr.n <= 0:
		c.replyError(http.StatusRequestHeaderFieldsTooLarge, "")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), c.ctx.Err() != nil:
	default:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) {
			return
		}
		if strings.Contains(err.Error(), "unsupported transfer encoding") {
			c.replyError(http.StatusNotImplemented, "unsupported transfer encoding")
			return
		}
		c.replyError(http.StatusBadRequest, "")
	}
}

// replyError writes net/http's answer to a request it cannot serve and
// leaves the connection to be closed.
func (c *h1Conn) replyError(code int, msg string) {
	text := http.StatusText(code)
	if msg != "" {
		text += ": " + msg
	}
	c.bw.WriteString("HTTP/1.1 ")
	c.bw.WriteString(statusLine(code))
	c.bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	if code != http.StatusExpectationFailed {
		c.bw.WriteString(itoa(code) + " " + text)
	}
	c.bw.Flush()
}

// serveOne serves req; it reports whether the connection may carry
// another request.
func (c *h1Conn) serveOne(req *http.Request) bool {
	w := &c.w
	w.reset(c, req)
	var body *h1Body
	if req.Body != nil && req.Body != http.NoBody {
		body = &h1Body{c: c, rc: req.Body}
		body.continueNeeded = req.ProtoAtLeast(1, 1) && len(req.Header["Expect"]) == 1 && req.ContentLength != 0
		req.Body = body
	} else {
		req.Body = http.NoBody
	}
	c.body.Store(body)
	c.watcher.Reset(watchAfter)
	aborted := c.handle(req, w)
	if !c.watcher.Stop() {
		c.stopWatch()
	}
	if body != nil && !body.finish() {
		w.closeAfter = true
	}
	if aborted {
		// The answer is incomplete: reset the stream rather than end it.
		c.s.Reset()
		return false
	}
	w.finish()
	return !w.closeAfter && w.err == nil
}

// handle runs the request handler; it reports whether the handler aborted
// (panicked).
func (c *h1Conn) handle(req *http.Request, w *h1Writer) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				c.l.log.Error("request handler panicked", zap.Any("panic", v), zap.Stack("stack"))
			}
		}
	}()
	c.l.serve(c.ctx, w, req, c.t)
	return false
}

// watch runs (on its own goroutine) when a request takes longer than
// watchAfter: once the request body was read, it reads ahead on the tunnel
// so that a client that leaves cancels the request, as net/http does.
func (c *h1Conn) watch() {
	defer func() { c.watchDone <- struct{}{} }()
	if b := c.body.Load(); b != nil && !b.eof.Load() {
		return // the handler still reads the body
	}
	if _, err := c.br.Peek(1); err != nil && !c.stopping.Load() {
		c.cancel()
	}
}

// stopWatch interrupts the watcher's read and waits for it.
func (c *h1Conn) stopWatch() {
	c.stopping.Store(true)
	c.s.SetReadDeadline(time.Unix(1, 0))
	<-c.watchDone
	c.s.SetReadDeadline(time.Time{})
	c.stopping.Store(false)
}

// h1Body is a request body: it sends 100 Continue on the first read when
// the client waits for it, and stops reads once the request is over.
type h1Body struct {
	c              *h1Conn
	mu             sync.Mutex
	rc             io.ReadCloser
	continueNeeded bool
	done           bool
	eof            atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.continueNeeded {
		b.continueNeeded = false
		if err := b.c.writeContinue(); err != nil {
			return 0, err
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Close does not close the tunnel: what is left of the body is discarded
// after the handler.
func (b *h1Body) Close() error { return nil }

// finish ends the body after the handler: it discards what is left (up to
// maxDrainBody) and reports whether the connection can be reused.
func (b *h1Body) finish() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	if b.eof.Load() {
		return true
	}
	if b.continueNeeded {
		return false // the client may or may not send the body
	}
	n, err := io.CopyN(io.Discard, b.rc, maxDrainBody+1)
	return err == io.EOF && n <= maxDrainBody
}

// writeContinue sends 100 Continue unless the answer has started.
func (c *h1Conn) writeContinue() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w.wroteHead {
		return nil
	}
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return c.bw.Flush()
}
