package hbone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Handler serves CONNECT requests from verified peers, one goroutine per
// stream. It must call r.Accept or r.Reject; when ServeHBONE returns, the
// stream is closed (and answered with 503 if it never was). ctx ends when
// the HBONE connection closes; a handler must also return once its stream
// fails, so that Shutdown can finish.
type Handler interface {
	ServeHBONE(ctx context.Context, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r *Request)

// ServeHBONE calls f.
func (f HandlerFunc) ServeHBONE(ctx context.Context, r *Request) { f(ctx, r) }

// Request is a CONNECT request from a verified mesh peer.
type Request struct {
	Target
	// Peer is the verified SPIFFE identity of the client certificate.
	Peer spiffe.Identity
	// PeerCertificate is that (verified) client leaf certificate, e.g. to
	// log its serial number.
	PeerCertificate *x509.Certificate
	// LocalAddr and RemoteAddr are those of the HBONE connection.
	LocalAddr, RemoteAddr net.Addr

	stream *Stream
}

// Accept answers 200 and returns the tunnel.
func (r *Request) Accept() (*Stream, error) {
	if err := r.respond(http.StatusOK); err != nil {
		return nil, err
	}
	return r.stream, nil
}

// Reject answers status (401 for a policy denial, 503 when the destination
// cannot be reached) and ends the stream.
func (r *Request) Reject(status int) error {
	if status < 300 || status > 599 {
		return fmt.Errorf("reject with status %d: want a 3xx-5xx status", status)
	}
	err := r.respond(status)
	r.stream.Close()
	return err
}

func (r *Request) respond(status int) error {
	s := r.stream
	c := s.c
	c.mu.Lock()
	if s.gotResponse {
		c.mu.Unlock()
		return fmt.Errorf("HBONE stream %d already answered with %d", s.id, s.status)
	}
	s.gotResponse, s.status = true, status
	end := status != http.StatusOK
	if end {
		s.sentEnd = true
	}
	err := s.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeHeadersLocked(s.id, end, statusFields(status)); err != nil {
		return err
	}
	return c.flushLocked()
}

var status200 = []hpack.HeaderField{{Name: ":status", Value: "200"}}

func statusFields(status int) []hpack.HeaderField {
	if status == http.StatusOK {
		return status200
	}
	return []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(status)}}
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// GetCertificate chooses the server certificate per connection; ztunnel
	// serves the destination workload's identity, picked from
	// hello.Conn.LocalAddr(). Required.
	GetCertificate func(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Bundle returns the trust bundle client certificates must chain to;
	// called on every handshake so roots can rotate. Required.
	Bundle func() spiffe.Bundle
	// Handler serves accepted requests. Required.
	Handler Handler
	// Logger receives connection-level events at debug level. Optional.
	Logger *zap.Logger
	// HandshakeTimeout bounds the TLS handshake and HTTP/2 preface.
	// Default 10 s.
	HandshakeTimeout time.Duration
	Limits
}

// Server accepts HBONE connections.
type Server struct {
	cfg   ServerConfig
	tls   *tls.Config
	log   *zap.Logger
	stats counters

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	pending   map[net.Conn]struct{} // in handshake
	closing   bool
	wg        sync.WaitGroup // connection and handler goroutines
}

// NewServer checks cfg and builds a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.GetCertificate == nil || cfg.Bundle == nil || cfg.Handler == nil {
		return nil, errors.New("hbone.NewServer: GetCertificate, Bundle and Handler are required")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Server{
		cfg:       cfg,
		tls:       serverTLSConfig(cfg.GetCertificate, cfg.Bundle),
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		pending:   make(map[net.Conn]struct{}),
	}, nil
}

// Stats reports open connections and streams.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Serve accepts connections on ln until Shutdown or Close, then returns
// ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				s.mu.Lock()
				s.listeners[ln] = struct{}{}
				s.mu.Unlock()
				continue
			}
			return fmt.Errorf("accept on %v: %w", ln.Addr(), err)
		}
		delay = 0
		s.ServeConn(nc)
	}
}

// ServeConn serves one accepted TCP connection in the background (for
// listeners the caller accepts from itself).
func (s *Server) ServeConn(nc net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.pending[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c, err := s.handshake(nc)
		s.mu.Lock()
		delete(s.pending, nc)
		closing := s.closing
		if err == nil && !closing {
			s.conns[c] = struct{}{}
		}
		s.mu.Unlock()
		if err == nil && closing {
			c.closeWithError(ErrServerClosed)
			return
		}
		if err != nil {
			s.log.Debug("HBONE handshake failed", zap.Stringer("remote", nc.RemoteAddr()), zap.Error(err))
			nc.Close()
			return
		}
		if err := c.start(); err != nil {
			s.log.Debug("HBONE connection start failed", zap.Stringer("remote", nc.RemoteAddr()), zap.Error(err))
		}
	}()
}

// handshake runs TLS and reads the HTTP/2 preface within HandshakeTimeout.
func (s *Server) handshake(nc net.Conn) (*conn, error) {
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	nc.SetDeadline(deadline)
	cork := &corkConn{Conn: nc}
	tc := tls.Server(cork, s.tls)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		return nil, fmt.Errorf("client did not negotiate ALPN %q (got %q); HBONE needs HTTP/2", ALPN, cs.NegotiatedProtocol)
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(tc, preface[:]); err != nil {
		return nil, fmt.Errorf("read HTTP/2 preface: %w", err)
	}
	if string(preface[:]) != http2.ClientPreface {
		return nil, errors.New("bad HTTP/2 preface")
	}
	nc.SetDeadline(time.Time{})
	peer, err := spiffe.FromCertificate(cs.PeerCertificates[0])
	if err != nil {
		return nil, fmt.Errorf("client identity: %w", err)
	}
	h := &serverConn{srv: s, peer: peer, peerCert: cs.PeerCertificates[0]}
	return newConn(tc, cork, false, s.cfg.Limits, h, &s.stats, &s.wg), nil
}

// serverConn is the server role of a connection.
type serverConn struct {
	srv      *Server
	peer     spiffe.Identity
	peerCert *x509.Certificate
	// handlers counts running handler goroutines, which outlive streams a
	// client resets. Past maxHandlersFactor × MaxConcurrentStreams the
	// client is opening and resetting streams faster than handlers finish
	// (the "rapid reset" attack) and the connection is closed.
	handlers atomic.Int64
}

const maxHandlersFactor = 4

func (h *serverConn) onHeaders(c *conn, f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		// Trailers: only END_STREAM matters.
		idle := false
		if f.StreamEnded() && !s.recvEnd {
			s.recvEnd = true
			if s.sentEnd {
				idle = c.removeStreamLocked(s)
			}
			s.cond.Broadcast()
		}
		c.mu.Unlock()
		if idle {
			c.streamIdle()
		}
		return nil
	}
	if id%2 == 0 {
		c.mu.Unlock()
		c.goAwayError(http2.ErrCodeProtocol)
		return fmt.Errorf("client opened even-numbered stream %d", id)
	}
	if id <= c.lastPeerID {
		// A stream we already closed (trailers racing our reset).
		c.mu.Unlock()
		c.queue(func() { c.fr.WriteRSTStream(id, http2.ErrCodeStreamClosed) })
		return nil
	}
	c.lastPeerID = id
	if c.goAwaySent || c.closed || uint32(len(c.streams)) >= c.lim.MaxConcurrentStreams {
		c.mu.Unlock()
		c.queue(func() { c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
		return nil
	}
	s := newStream(c, id)
	s.recvEnd = f.StreamEnded()
	c.streams[id] = s
	c.stats.streams.Add(1)
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.mu.Unlock()

	req := &Request{Peer: h.peer, PeerCertificate: h.peerCert, LocalAddr: c.nc.LocalAddr(), RemoteAddr: c.nc.RemoteAddr(), stream: s}
	t, err := ParseRequest(f.Fields)
	if err == nil && f.Truncated {
		err = fmt.Errorf("header block over %d bytes: %w", c.lim.MaxHeaderBytes, ErrBadRequest)
	}
	if err != nil {
		h.srv.log.Debug("HBONE bad request", zap.Uint32("stream", id), zap.Error(err))
		h.srv.wg.Add(1)
		go func() {
			defer h.srv.wg.Done()
			req.Reject(http.StatusBadRequest)
		}()
		return nil
	}
	req.Target = t
	if h.handlers.Add(1) > maxHandlersFactor*int64(c.lim.MaxConcurrentStreams) {
		h.handlers.Add(-1)
		c.goAwayError(http2.ErrCodeEnhanceYourCalm)
		return fmt.Errorf("client keeps over %d handlers busy (opening and resetting streams?)", maxHandlersFactor*c.lim.MaxConcurrentStreams)
	}
	h.srv.wg.Add(1)
	go h.serve(c, req)
	return nil
}

func (h *serverConn) serve(c *conn, req *Request) {
	defer h.srv.wg.Done()
	defer h.handlers.Add(-1)
	h.srv.cfg.Handler.ServeHBONE(c.ctx, req)
	s := req.stream
	c.mu.Lock()
	answered := s.gotResponse
	c.mu.Unlock()
	if !answered {
		req.Reject(http.StatusServiceUnavailable)
		return
	}
	s.Close()
}

func (h *serverConn) onIdle(c *conn) {
	h.srv.mu.Lock()
	closing := h.srv.closing
	h.srv.mu.Unlock()
	if closing {
		c.shutdown()
	}
}

func (h *serverConn) onClose(c *conn) {
	h.srv.mu.Lock()
	delete(h.srv.conns, c)
	h.srv.mu.Unlock()
}

// Shutdown stops accepting, sends GOAWAY on every connection and waits for
// their streams to finish or ctx to end; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.stop()
	for _, c := range conns {
		c.shutdown()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("HBONE server shutdown: %w (closing remaining connections)", ctx.Err())
		s.closeAll()
		<-done
	}
	return err
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.closeAll()
	s.wg.Wait()
	return nil
}

func (s *Server) stop() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for nc := range s.pending {
		nc.Close()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWithError(fmt.Errorf("%w: server closed", ErrConnClosed))
	}
}
