package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Direct reports whether req can take the direct HTTP/1.1 path: no body
// and a method that may be sent again (so a kept-alive connection the
// backend closed while idle can be retried on a fresh one, as
// http.Transport retries replayable requests).
func h1Direct(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength != 0 {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// h1Pool sends bodiless HTTP/1.1 requests over kept-alive tunnels to one
// endpoint, in the caller's goroutine: write the request, read the answer.
// http.Transport runs a read and a write goroutine per connection and hands
// every request and response between them; on a waypoint those hand-offs
// (goroutine wake-ups on other threads) cost more than the HTTP itself.
type h1Pool struct {
	dial        func(ctx context.Context) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	timer  *time.Timer
	closed bool
}

type h1Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newH1Pool(dial func(ctx context.Context) (net.Conn, error), maxIdle int, idleTimeout time.Duration) *h1Pool {
	return &h1Pool{dial: dial, maxIdle: maxIdle, idleTimeout: idleTimeout}
}

// get returns an idle connection (reused) or dials one.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, bool, error) {
	now := time.Now()
	var stale []*h1Conn
	p.mu.Lock()
	var pc *h1Conn
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleAt) < p.idleTimeout {
			pc = c
			break
		}
		stale = append(stale, c)
	}
	closed := p.closed
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
	if pc != nil {
		return pc, true, nil
	}
	if closed {
		return nil, false, errors.New("upstream client closed")
	}
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, false, nil
}

// put keeps pc for the next request, or closes it when the pool is full or
// closed.
func (p *h1Pool) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		pc.nc.Close()
		return
	}
	p.idle = append(p.idle, pc)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleTimeout, p.prune)
	}
	p.mu.Unlock()
}

// prune closes connections idle for longer than idleTimeout, and runs
// again while any connection is idle.
func (p *h1Pool) prune() {
	now := time.Now()
	var stale []*h1Conn
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		if now.Sub(c.idleAt) >= p.idleTimeout {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.timer = nil
	if len(p.idle) > 0 && !p.closed {
		next := p.idle[0].idleAt.Add(p.idleTimeout).Sub(now)
		p.timer = time.AfterFunc(next, p.prune)
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// Close closes the idle connections and refuses new requests; connections
// in use close when their requests end.
func (p *h1Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// RoundTrip sends req (h1Direct(req) must hold). A request that fails on a
// reused connection before any answer is sent again once, on a newly dialed
// connection: the other idle connections to this backend most likely died
// with the one that failed (the backend restarted), so they are dropped
// rather than tried in turn.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	pc, reused, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	res, err := p.exchange(ctx, pc, req)
	if err == nil || !reused || ctx.Err() != nil {
		return res, err
	}
	p.dropIdle()
	if pc, _, err = p.get(ctx); err != nil {
		return nil, err
	}
	return p.exchange(ctx, pc, req)
}

// dropIdle closes every idle connection.
func (p *h1Pool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// exchange writes req on pc and reads the response head; the body, when
// read to its end, returns pc to the pool.
func (p *h1Pool) exchange(ctx context.Context, pc *h1Conn, req *http.Request) (*http.Response, error) {
	// Cancellation interrupts blocked reads and writes; a connection
	// interrupted this way is closed, never reused.
	stop := context.AfterFunc(ctx, func() { pc.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	var res *http.Response
	for {
		var err error
		res, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(err)
		}
		// 1xx informational answers precede the final one (101 is final).
		if res.StatusCode < 100 || res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	reuse := !res.Close && !req.Close && res.StatusCode != http.StatusSwitchingProtocols
	b := &h1Body{rc: res.Body, pc: pc, pool: p, ctx: ctx, stop: stop, reuse: reuse}
	if res.Body == http.NoBody {
		b.release(true)
		return res, nil
	}
	res.Body = b
	return res, nil
}

// h1Body is a response body that releases its connection at the end.
type h1Body struct {
	rc    io.ReadCloser
	pc    *h1Conn
	pool  *h1Pool
	ctx   context.Context
	stop  func() bool
	reuse bool
	done  atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		b.release(false)
	}
	return n, err
}

// Close before the end closes the connection (the rest of the answer is
// still on it).
func (b *h1Body) Close() error {
	b.release(false)
	return nil
}

// release returns the connection to the pool when the answer was read to
// its end, may be followed by another, and was not interrupted; else it
// closes the connection.
func (b *h1Body) release(complete bool) {
	if b.done.Swap(true) {
		return
	}
	if b.stop() && complete && b.reuse {
		b.pool.put(b.pc)
		return
	}
	b.pc.nc.Close()
}

// validHeaders refuses header names and values that cannot be sent, as
// http.Transport does before writing a request.
func validHeaders(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}
