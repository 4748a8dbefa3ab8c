package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/upstream"
)

// Defaults of Config.
const (
	DefaultMaxConnections = 4096
	DefaultMaxRequests    = 4096
	DefaultMaxRetryBody   = 64 << 10
)

// DefaultOutlier is the outlier detection of clusters that configure
// none: 5 consecutive failures eject an endpoint for 30 s (longer each
// time), at most half of a cluster's endpoints at once.
var DefaultOutlier = state.Outlier{Consecutive5xx: 5, BaseEjection: 30 * time.Second, MaxEjectionPercent: 50}

// Config configures a Listener.
type Config struct {
	// State returns the current configuration snapshot. Required.
	State func() *state.Snapshot
	// Identity is the waypoint's own identity: the HBONE source towards
	// destinations. Required.
	Identity spiffe.Identity
	// Tunnels dials HBONE to destinations (an *hbone.Client). Required.
	Tunnels upstream.Dialer
	// Upstream sends requests to endpoints; built from Tunnels and
	// Identity when nil.
	Upstream *upstream.Client
	// Metrics receives the standard request metrics; nil disables them.
	Metrics *Metrics
	// Logger receives the access log (one line per request, message
	// "access") and errors. Default: no logging.
	Logger *zap.Logger
	// MaxConnections caps concurrent tunnels (HBONE streams); more are
	// refused with 503. MaxRequests caps concurrent HTTP requests; more get
	// 503 with x-envoy-overloaded. Defaults 4096 each.
	MaxConnections, MaxRequests int
	// MaxRetryBody is the largest request body buffered so the request can
	// be retried (default 64 KiB). Larger or unsized bodies are retried
	// only when no byte of them was sent yet.
	MaxRetryBody int64
	// Outlier is the outlier detection of clusters without their own;
	// DefaultOutlier when zero. Set Consecutive5xx to MaxUint32 to disable.
	Outlier state.Outlier
	// TunnelPort is the HBONE port of pods the snapshot does not know, for
	// opaque passthrough (default 15008).
	TunnelPort uint16
	// Seed makes random choices (weighted clusters, faults, ids)
	// reproducible; 0 seeds randomly.
	Seed uint64
	// UpstreamServiceTime adds x-envoy-upstream-service-time to responses.
	UpstreamServiceTime bool
}

// Listener serves the tunnels ztunnels open to the waypoint. It implements
// hbone.Handler.
type Listener struct {
	cfg      Config
	log      *zap.Logger
	up       *upstream.Client
	ownUp    bool
	balancer *upstream.Balancer
	srv      *http.Server
	h1       h1Set       // lean HTTP/1.1 connections
	closing  atomic.Bool // Shutdown or Close began

	conns, reqs atomic.Int64

	rmu sync.Mutex
	rnd *rand.Rand

	wg sync.WaitGroup // passthrough copies
}

// New checks cfg and builds a Listener.
func New(cfg Config) (*Listener, error) {
	if cfg.State == nil || cfg.Tunnels == nil || cfg.Identity.IsZero() {
		return nil, errors.New("listener.New: State, Tunnels and Identity are required")
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = DefaultMaxRequests
	}
	if cfg.MaxRetryBody <= 0 {
		cfg.MaxRetryBody = DefaultMaxRetryBody
	}
	if cfg.Outlier == (state.Outlier{}) {
		cfg.Outlier = DefaultOutlier
	}
	if cfg.TunnelPort == 0 {
		cfg.TunnelPort = state.DefaultTunnelPort
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	l := &Listener{cfg: cfg, log: cfg.Logger, up: cfg.Upstream, balancer: upstream.NewBalancer(cfg.Outlier)}
	if l.up == nil {
		up, err := upstream.NewClient(upstream.Config{HBONE: cfg.Tunnels, Source: cfg.Identity})
		if err != nil {
			return nil, fmt.Errorf("listener.New: %w", err)
		}
		l.up, l.ownUp = up, true
	}
	seed1, seed2 := rand.Uint64(), rand.Uint64()
	if cfg.Seed != 0 {
		seed1, seed2 = cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15
	}
	l.rnd = rand.New(rand.NewPCG(seed1, seed2))
	// One net/http server for all tunnels: HTTP/1.1, and HTTP/2 with prior
	// knowledge, which net/http recognises by its "PRI * HTTP/2.0" preface.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	l.srv = &http.Server{
		Handler:           l,
		Protocols:         &protos,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(l.log.Named("http")),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tunnelConn); ok {
				return withTunnel(ctx, tc.t)
			}
			return ctx
		},
	}
	return l, nil
}

// Stats reports the tunnels and requests in progress.
func (l *Listener) Stats() (tunnels, requests int64) { return l.conns.Load(), l.reqs.Load() }

// ServeHBONE serves one tunnel until it ends.
func (l *Listener) ServeHBONE(ctx context.Context, r *hbone.Request) {
	if n := l.conns.Add(1); n > int64(l.cfg.MaxConnections) {
		l.conns.Add(-1)
		l.log.Warn("tunnel refused: too many connections", zap.Int("max", l.cfg.MaxConnections), zap.String("peer", r.Peer.String()))
		_ = r.Reject(http.StatusServiceUnavailable)
		return
	}
	defer l.conns.Add(-1)
	snap := l.cfg.State()
	t := &tunnel{peer: r.Peer, peerURI: r.Peer.String(), authority: r.Authority, client: r.ForwardedFor,
		traceparent: r.Traceparent, baggage: r.Baggage}
	if !t.client.IsValid() {
		if ap, err := netip.ParseAddrPort(addrString(r.RemoteAddr)); err == nil {
			t.client = ap.Addr().Unmap()
		}
	}
	t.chain = snap.Chain(uint32(r.Authority.Port()))
	if t.chain == nil {
		l.passthrough(ctx, r, snap, t)
		return
	}
	s, err := r.Accept()
	if err != nil {
		return
	}
	l.serveHTTP(ctx, s, t)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// serveHTTP serves the HTTP inside the tunnel until it is closed:
// HTTP/1.1 on the lean path (serveH1), HTTP/2 with prior knowledge (gRPC
// and h2c clients) with net/http's server.
func (l *Listener) serveHTTP(ctx context.Context, s *hbone.Stream, t *tunnel) {
	lr := &limitedReader{r: s, n: maxHeaderBytes + 4096}
	br := bufio.NewReaderSize(lr, 4<<10)
	h2, err := isHTTP2(br)
	if err != nil {
		s.Close()
		return
	}
	if !h2 {
		l.serveH1(ctx, s, br, lr, t)
		return
	}
	lr.n = math.MaxInt64
	l.serveNetHTTP(ctx, &bufferedConn{Stream: s, r: br}, t)
}

// bufferedConn is a stream whose first bytes were read into r.
type bufferedConn struct {
	*hbone.Stream
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveNetHTTP runs net/http on the tunnel and returns when it is closed.
func (l *Listener) serveNetHTTP(ctx context.Context, s net.Conn, t *tunnel) {
	tc := &tunnelConn{Conn: s, t: t, done: make(chan struct{})}
	if err := l.srv.Serve(&oneConnListener{conn: tc}); errors.Is(err, http.ErrServerClosed) {
		tc.Close()
		return
	}
	select {
	case <-tc.done:
	case <-ctx.Done():
		tc.Close()
	}
}

// Shutdown stops serving HTTP gracefully (idle keep-alive connections are
// closed, HTTP/2 ones get GOAWAY) and waits for passthrough copies, until
// ctx ends. Shut the HBONE server down first so no new tunnels arrive.
func (l *Listener) Shutdown(ctx context.Context) error {
	h1done := l.h1.shutdown(&l.closing)
	err := l.srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	for _, ch := range []<-chan struct{}{h1done, done} {
		select {
		case <-ch:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
	}
	if l.ownUp {
		l.up.Close()
	}
	return err
}

// Close closes all HTTP connections at once and the upstream pools.
func (l *Listener) Close() error {
	l.h1.closeAll(&l.closing)
	err := l.srv.Close()
	if l.ownUp {
		l.up.Close()
	}
	return err
}

// random runs f with the listener's random source.
func (l *Listener) random(f func(r *rand.Rand)) {
	l.rmu.Lock()
	f(l.rnd)
	l.rmu.Unlock()
}
