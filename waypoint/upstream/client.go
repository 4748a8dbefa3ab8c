package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// Dialer opens HBONE streams; *hbone.Client implements it.
type Dialer interface {
	Dial(ctx context.Context, req hbone.DialRequest) (*hbone.Stream, error)
}

// Config configures a Client.
type Config struct {
	// HBONE dials the tunnels. Required.
	HBONE Dialer
	// Source is the waypoint's own identity, presented to the destination
	// ztunnels. Required.
	Source spiffe.Identity
	// MaxIdleConnsPerEndpoint bounds kept-alive HTTP/1.1 connections per
	// endpoint (default 64).
	MaxIdleConnsPerEndpoint int
	// IdleConnTimeout closes unused connections (default 90 s).
	IdleConnTimeout time.Duration
}

// Client sends HTTP requests to endpoints over HBONE, reusing connections
// per endpoint. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu     sync.Mutex
	pools  map[poolKey]*pool
	closed bool
}

// pool holds the connections to one endpoint: bodiless replayable HTTP/1.1
// requests go through direct (see h1Pool), everything else through tr.
type pool struct {
	tr     http.RoundTripper
	direct *h1Pool // nil for HTTP/2
}

func (p *pool) closeIdle() {
	closeIdle(p.tr)
	if p.direct != nil {
		p.direct.Close()
	}
}

type poolKey struct {
	tunnel, dest netip.AddrPort
	id           spiffe.Identity
	h2           bool
}

// ConnectError is a failure to open the HBONE tunnel to an endpoint (Envoy's
// connect-failure).
type ConnectError struct {
	Endpoint netip.AddrPort
	Err      error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("connect to endpoint %s: %v", e.Endpoint, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// NewClient checks cfg and builds a Client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.HBONE == nil || cfg.Source.IsZero() {
		return nil, errors.New("upstream.NewClient: HBONE and Source are required")
	}
	if cfg.MaxIdleConnsPerEndpoint <= 0 {
		cfg.MaxIdleConnsPerEndpoint = 64
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 90 * time.Second
	}
	return &Client{cfg: cfg, pools: map[poolKey]*pool{}}, nil
}

type fwdKey struct{}

// WithForwardedFor returns ctx carrying the original client address; a
// connection dialed for a request with it sends `forwarded: for=` on the
// HBONE CONNECT (connections are reused, so later requests on the same
// connection may come from other clients; per request the address is in
// X-Forwarded-For).
func WithForwardedFor(ctx context.Context, addr netip.Addr) context.Context {
	if !addr.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, fwdKey{}, addr)
}

func forwardedFor(ctx context.Context) netip.Addr {
	a, _ := ctx.Value(fwdKey{}).(netip.Addr)
	return a
}

// RoundTrip sends req to endpoint ep: HTTP/2 (h2c) when h2, else HTTP/1.1.
// req.URL.Host is ignored: the connection is a tunnel to ep.Destination.
// Failures to open the tunnel are a *ConnectError.
func (c *Client) RoundTrip(ep *state.Endpoint, h2 bool, connectTimeout time.Duration, req *http.Request) (*http.Response, error) {
	p, err := c.pool(ep, h2, connectTimeout)
	if err != nil {
		return nil, err
	}
	if p.direct != nil && h1Direct(req) {
		if err := validHeaders(req.Header); err != nil {
			return nil, err
		}
		return p.direct.RoundTrip(req)
	}
	return p.tr.RoundTrip(req)
}

func (c *Client) pool(ep *state.Endpoint, h2 bool, connectTimeout time.Duration) (*pool, error) {
	k := poolKey{tunnel: ep.Tunnel, dest: ep.Destination, id: ep.Identity, h2: h2}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("upstream client closed")
	}
	if p, ok := c.pools[k]; ok {
		return p, nil
	}
	dial := c.dialer(k, connectTimeout)
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: c.cfg.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:     c.cfg.IdleConnTimeout,
		DisableCompression:  true,
	}
	if h2 {
		// h2c with prior knowledge over the tunnel (gRPC, HTTP/2 clusters).
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
		tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	}
	p := &pool{tr: tr}
	if !h2 {
		p.direct = newH1Pool(func(ctx context.Context) (net.Conn, error) { return dial(ctx, "", "") },
			c.cfg.MaxIdleConnsPerEndpoint, c.cfg.IdleConnTimeout)
	}
	c.pools[k] = p
	return p, nil
}

func (c *Client) dialer(k poolKey, timeout time.Duration) func(ctx context.Context, _, _ string) (net.Conn, error) {
	var expect []spiffe.Identity
	if !k.id.IsZero() {
		expect = []spiffe.Identity{k.id}
	}
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		s, err := c.cfg.HBONE.Dial(ctx, hbone.DialRequest{
			Source:        c.cfg.Source,
			Peer:          k.tunnel,
			ExpectedPeers: expect,
			Target:        hbone.Target{Authority: k.dest, ForwardedFor: forwardedFor(ctx)},
		})
		if err != nil {
			return nil, &ConnectError{Endpoint: k.dest, Err: err}
		}
		return s, nil
	}
}

// Retain closes the pools of endpoints for which keep is false (call after
// a configuration change).
func (c *Client) Retain(keep func(tunnel, dest netip.AddrPort) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.pools {
		if !keep(k.tunnel, k.dest) {
			p.closeIdle()
			delete(c.pools, k)
		}
	}
}

// Endpoints lists the endpoints with a pool, for debugging and tests.
func (c *Client) Endpoints() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []netip.AddrPort
	for k := range c.pools {
		out = append(out, k.dest)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Close closes idle connections and refuses further requests; connections
// in use close when their requests end.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, p := range c.pools {
		p.closeIdle()
		delete(c.pools, k)
	}
}

func closeIdle(rt http.RoundTripper) {
	if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
