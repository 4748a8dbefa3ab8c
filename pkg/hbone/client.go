package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// CertSource supplies the certificate a client presents for a source
// identity: ztunnel has one per local workload, a waypoint its own.
type CertSource interface {
	ClientCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Certs supplies client certificates per source identity. Required.
	Certs CertSource
	// Bundle returns the trust bundle server certificates must chain to;
	// called for every new connection. Required.
	Bundle func() spiffe.Bundle
	// DialTimeout bounds TCP connect + TLS handshake of a new connection.
	// Default 10 s.
	DialTimeout time.Duration
	// DialContext opens the TCP connection; default a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// SpreadStreams and MaxSpreadConns spread busy peers over several
	// connections: once every connection to a peer (per source identity)
	// carries SpreadStreams streams, a new stream opens another connection,
	// up to MaxSpreadConns; beyond that streams go to the least loaded one
	// (each still capped by MaxConcurrentStreams). Each connection has its
	// own read loop, so the streams of a busy peer are decrypted on several
	// cores. Defaults 4 and 4; a negative SpreadStreams packs streams onto
	// one connection until it is full.
	SpreadStreams  int
	MaxSpreadConns int
	// Limits tune the HTTP/2 connections. IdleTimeout defaults to 5 minutes
	// for the client.
	Limits
}

// Defaults of ClientConfig.SpreadStreams and MaxSpreadConns.
const (
	DefaultSpreadStreams  = 4
	DefaultMaxSpreadConns = 4
)

// DefaultClientIdleTimeout is how long an unused pooled connection stays
// open.
const DefaultClientIdleTimeout = 5 * time.Minute

// DialRequest describes one HBONE stream to open.
type DialRequest struct {
	// Source is the identity whose certificate is presented.
	Source spiffe.Identity
	// Peer is the HBONE endpoint, e.g. 10.0.0.5:15008.
	Peer netip.AddrPort
	// ExpectedPeers, if not empty, are the identities the peer may have.
	ExpectedPeers []spiffe.Identity
	// Target holds the :authority and the forwarded/baggage/traceparent
	// headers.
	Target
}

// ErrClientClosed is returned by Dial after Close.
var ErrClientClosed = errors.New("HBONE client closed")

// Client opens HBONE streams over pooled connections. It is safe for
// concurrent use.
type Client struct {
	cfg   ClientConfig
	stats counters
	wg    sync.WaitGroup

	mu     sync.Mutex
	pools  map[poolKey]*keyPool
	closed bool
}

type poolKey struct {
	src    spiffe.Identity
	peer   netip.AddrPort
	expect string
}

type keyPool struct {
	conns []*conn
	dial  *dialCall // in flight, shared by concurrent Dials
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewClient checks cfg and builds a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Certs == nil || cfg.Bundle == nil {
		return nil, errors.New("hbone.NewClient: Certs and Bundle are required")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultHandshakeTimeout
	}
	if cfg.DialContext == nil {
		var d net.Dialer
		cfg.DialContext = d.DialContext
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultClientIdleTimeout
	}
	if cfg.SpreadStreams == 0 {
		cfg.SpreadStreams = DefaultSpreadStreams
	}
	if cfg.MaxSpreadConns <= 0 {
		cfg.MaxSpreadConns = DefaultMaxSpreadConns
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Client{cfg: cfg, pools: make(map[poolKey]*keyPool)}, nil
}

// Stats reports open connections and streams.
func (cl *Client) Stats() Stats { return cl.stats.snapshot() }

// Dial opens a stream to req.Authority through the HBONE peer req.Peer.
// A non-200 answer is a *StatusError (errors.Is ErrDenied,
// ErrUpstreamUnreachable, ErrBadRequest); connection failures are a
// *DialError.
func (cl *Client) Dial(ctx context.Context, req DialRequest) (*Stream, error) {
	if !req.Peer.IsValid() || !req.Authority.IsValid() {
		return nil, fmt.Errorf("HBONE dial: peer %v and authority %v must both be ip:port", req.Peer, req.Authority)
	}
	key := poolKey{src: req.Source, peer: req.Peer, expect: expectKey(req.ExpectedPeers)}
	fields := requestFields(req.Target)
	for attempt := 0; ; attempt++ {
		c, err := cl.getConn(ctx, key, req)
		if err != nil {
			return nil, err
		}
		s, err := c.openStream(ctx, fields)
		if retryable(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("HBONE CONNECT %s via %s: %w", req.Authority, req.Peer, err)
		}
		if s.status != http.StatusOK {
			s.Close()
			return nil, &StatusError{Status: s.status, Peer: req.Peer.String(), Authority: req.Authority.String()}
		}
		return s, nil
	}
}

func expectKey(ids []spiffe.Identity) string {
	if len(ids) == 0 {
		return ""
	}
	ss := make([]string, len(ids))
	for i, id := range ids {
		ss[i] = id.String()
	}
	slices.Sort(ss)
	return strings.Join(ss, ",")
}

// getConn returns a pooled connection opened with the source's current
// certificate with a stream slot reserved, dialing one (once for all
// concurrent callers) if none has room. Connections opened with an older
// certificate are drained: their streams go on, they take no new ones.
func (cl *Client) getConn(ctx context.Context, key poolKey, req DialRequest) (*conn, error) {
	// Asked once per Dial: the source renews certificates (pkg/identity
	// returns a cached pointer, so this is cheap). Once per Dial, not per
	// loop: a connection this Dial waited for was opened with this
	// certificate, so the loop converges even if the source hands out a new
	// certificate on every call.
	cctx, cancel := context.WithTimeout(ctx, cl.cfg.DialTimeout)
	cert, err := cl.cfg.Certs.ClientCertificate(cctx, req.Source)
	cancel()
	if err == nil && cert == nil {
		err = errors.New("no certificate")
	}
	if err != nil {
		return nil, &DialError{Peer: req.Peer.String(), Op: "cert", Err: fmt.Errorf("identity %s: %w", req.Source, err)}
	}
	if err := checkCertExpiry(req.Source, cert, time.Now()); err != nil {
		return nil, &DialError{Peer: req.Peer.String(), Op: "cert", Err: err}
	}
	sp := spread{at: cl.cfg.SpreadStreams, maxConns: cl.cfg.MaxSpreadConns}
	for {
		var drain []*conn
		cl.mu.Lock()
		if cl.closed {
			cl.mu.Unlock()
			return nil, ErrClientClosed
		}
		kp := cl.pools[key]
		if kp == nil {
			kp = &keyPool{}
			cl.pools[key] = kp
		}
		loads := make([]connLoad, len(kp.conns))
		for i, c := range kp.conns {
			loads[i] = c.load()
			if loads[i].stale = !sameCert(c.cert, cert); loads[i].stale && loads[i].usable {
				drain = append(drain, c)
			}
		}
		var picked *conn
		if i := pickConn(loads, sp); i >= 0 {
			c := kp.conns[i]
			picked = c
			c.mu.Lock()
			c.reserved++
			if c.idleTimer != nil {
				c.idleTimer.Stop()
			}
			c.mu.Unlock()
		}
		var dc *dialCall
		if picked == nil {
			if dc = kp.dial; dc == nil {
				dc = &dialCall{done: make(chan struct{})}
				kp.dial = dc
				cl.wg.Add(1)
				go cl.dial(key, kp, dc, req, cert)
			}
		}
		cl.mu.Unlock()
		for _, c := range drain {
			// GOAWAY; closes once its last stream ends.
			c.shutdown()
		}
		if picked != nil {
			return picked, nil
		}
		select {
		case <-dc.done:
			if dc.err != nil {
				if sp.at > 0 && pickConn(loads, spread{at: -1}) >= 0 {
					// Only spreading wanted that connection: use one
					// that has room instead of failing the stream.
					sp.at = -1
					continue
				}
				return nil, dc.err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("HBONE dial %s: %w", req.Peer, ctx.Err())
		}
	}
}

func (cl *Client) dial(key poolKey, kp *keyPool, dc *dialCall, req DialRequest, cert *tls.Certificate) {
	defer cl.wg.Done()
	c, err := cl.connect(key, req, cert)
	if err == nil {
		err = c.start()
	}
	cl.mu.Lock()
	if err == nil && cl.closed {
		err = ErrClientClosed
		defer c.closeWithError(ErrClientClosed)
	}
	if err == nil {
		// It may have died already (its onClose found nothing to remove).
		c.mu.Lock()
		if c.closed {
			err = c.closeErr
		}
		c.mu.Unlock()
	}
	if err == nil {
		kp.conns = append(kp.conns, c)
	}
	kp.dial = nil
	if err != nil && len(kp.conns) == 0 && cl.pools[key] == kp {
		delete(cl.pools, key)
	}
	dc.err = err
	close(dc.done)
	cl.mu.Unlock()
}

// connect opens TCP + mutual TLS to the peer, presenting cert.
func (cl *Client) connect(key poolKey, req DialRequest, cert *tls.Certificate) (*conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cl.cfg.DialTimeout)
	defer cancel()
	peer := req.Peer.String()
	nc, err := cl.cfg.DialContext(ctx, "tcp", peer)
	if err != nil {
		return nil, &DialError{Peer: peer, Op: "dial", Err: err}
	}
	cork := &corkConn{Conn: nc}
	tc := tls.Client(cork, clientTLSConfig(cert, cl.cfg.Bundle(), req.ExpectedPeers))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &DialError{Peer: peer, Op: "tls", Err: err}
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		nc.Close()
		return nil, &DialError{Peer: peer, Op: "tls", Err: fmt.Errorf("peer negotiated ALPN %q, want %q; is it an HBONE endpoint?", p, ALPN)}
	}
	c := newConn(tc, cork, true, cl.cfg.Limits, &clientConn{cl: cl, key: key}, &cl.stats, &cl.wg)
	c.cert = cert
	return c, nil
}

// Close closes every pooled connection; open streams fail.
func (cl *Client) Close() error {
	cl.mu.Lock()
	cl.closed = true
	var conns []*conn
	for _, kp := range cl.pools {
		conns = append(conns, kp.conns...)
	}
	cl.mu.Unlock()
	for _, c := range conns {
		c.closeWithError(fmt.Errorf("%w: client closed", ErrConnClosed))
	}
	cl.wg.Wait()
	return nil
}

// clientConn is the client role of a connection.
type clientConn struct {
	cl  *Client
	key poolKey
}

func (h *clientConn) onHeaders(c *conn, f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		c.mu.Unlock()
		return nil // answer to a stream we already gave up
	}
	if !s.gotResponse {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 100 || status > 999 {
			if s.err == nil {
				s.err = fmt.Errorf("peer answered with a bad :status %q: %w", f.PseudoValue("status"), ErrBadRequest)
			}
			idle := c.removeStreamLocked(s)
			s.cond.Broadcast()
			c.mu.Unlock()
			c.queue(func() { c.fr.WriteRSTStream(f.StreamID, http2.ErrCodeProtocol) })
			if idle {
				c.streamIdle()
			}
			return nil
		}
		if status < 200 {
			c.mu.Unlock()
			return nil // informational
		}
		s.status, s.gotResponse = status, true
	}
	idle := false
	if f.StreamEnded() && !s.recvEnd {
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

func (h *clientConn) onIdle(*conn) {}

func (h *clientConn) onClose(c *conn) {
	h.cl.mu.Lock()
	defer h.cl.mu.Unlock()
	kp := h.cl.pools[h.key]
	if kp == nil {
		return
	}
	kp.conns = slices.DeleteFunc(kp.conns, func(x *conn) bool { return x == c })
	if len(kp.conns) == 0 && kp.dial == nil {
		delete(h.cl.pools, h.key)
	}
}

// openStream sends the CONNECT request on a slot reserved by getConn and
// waits for the answer.
func (c *conn) openStream(ctx context.Context, fields []hpack.HeaderField) (*Stream, error) {
	c.wmu.Lock()
	c.mu.Lock()
	c.reserved--
	if c.closed || c.goAwayRecv || c.goAwaySent || c.nextID >= maxClientStream {
		cause := c.closeErr
		c.mu.Unlock()
		c.wmu.Unlock()
		c.streamIdle()
		return nil, retryError{cause}
	}
	id := c.nextID
	c.nextID += 2
	s := newStream(c, id)
	c.streams[id] = s
	c.stats.streams.Add(1)
	c.mu.Unlock()
	err := c.writeHeadersLocked(id, false, fields)
	if err == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		<-c.done // closed by the read loop, with the reason, or after a second
		c.mu.Lock()
		if c.closeErr != nil {
			err = c.closeErr
		}
		if s.err == nil {
			s.err = err
		}
		idle := c.removeStreamLocked(s)
		c.mu.Unlock()
		if idle {
			c.streamIdle()
		}
		return nil, retryError{err}
	}

	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		s.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	for !s.gotResponse && s.err == nil && ctx.Err() == nil {
		s.cond.Wait()
	}
	if s.gotResponse {
		c.mu.Unlock()
		return s, nil
	}
	err = s.err
	if err == nil {
		err = ctx.Err()
	}
	c.mu.Unlock()
	s.Close()
	return nil, err
}
