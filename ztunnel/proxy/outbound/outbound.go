package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/relay"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Reasons logged for refused connections.
const (
	ReasonNoOriginalDst = "original destination unknown"
	ReasonUnknownSource = "source is not a known workload"
	ReasonNoRoute       = "no route"
	ReasonDenied        = "route denied"
	ReasonDialFailed    = "upstream dial failed"
)

// ErrUnknownSource: the captured connection's source IP is not a workload
// of this ztunnel's network.
var ErrUnknownSource = errors.New("source IP is not a known workload; only enrolled pods' traffic should be captured")

// OriginalDstFunc returns the destination a captured connection was sent
// to. With transparent capture it is the connection's local address.
type OriginalDstFunc func(net.Conn) (netip.AddrPort, error)

// LocalAddr is the default OriginalDstFunc: getsockname of a transparently
// captured connection.
func LocalAddr(c net.Conn) (netip.AddrPort, error) {
	return addrPort(c.LocalAddr())
}

func addrPort(a net.Addr) (netip.AddrPort, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", a, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Dialer opens a plain TCP connection (passthrough).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures a Server.
type Config struct {
	// Store is ztunnel's state; Local its node and network. Required.
	Store *state.Store
	Local route.Local
	// Client opens HBONE streams; it presents source workloads'
	// certificates. Required.
	Client *hbone.Client
	// RouteOptions tune route.Route (randomness, HBONE port).
	RouteOptions route.Options
	// OriginalDst defaults to LocalAddr.
	OriginalDst OriginalDstFunc
	// Dial opens passthrough connections; default a net.Dialer with a 10 s
	// timeout. TODO: in production bind the source pod's IP with
	// IP_TRANSPARENT so the destination sees the pod, not the node.
	Dial Dialer
	// Tracker records live connections and writes access log lines.
	// Required.
	Tracker *conntrack.Tracker
	// Metrics, if set, receives Istio TCP metrics (reporter=source).
	Metrics *metrics.Metrics
	// Logger for errors not tied to a connection. Required.
	Logger *zap.Logger
}

// Server handles captured outbound connections.
type Server struct {
	cfg Config
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("outbound: Store is required")
	case cfg.Client == nil:
		return nil, errors.New("outbound: Client is required")
	case cfg.Tracker == nil:
		return nil, errors.New("outbound: Tracker is required")
	case cfg.Logger == nil:
		return nil, errors.New("outbound: Logger is required")
	}
	if cfg.OriginalDst == nil {
		cfg.OriginalDst = LocalAddr
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		cfg.Dial = d.DialContext
	}
	if r := cfg.RouteOptions.Rand; r != nil {
		cfg.RouteOptions.Rand = &lockedRand{r: r}
	}
	return &Server{cfg: cfg}, nil
}

// lockedRand makes a caller's Rand (often a *rand.Rand, not safe for
// concurrent use) usable from every connection's goroutine.
type lockedRand struct {
	mu sync.Mutex
	r  route.Rand
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

// MaxConnectAttempts bounds the HBONE connection attempts for one client
// connection: after a failure to connect (nothing of the client's sent
// yet), the next attempt goes to another endpoint when there is one.
const MaxConnectAttempts = 3

// ConnectRetryable reports whether an HBONE dial error may be retried on
// another endpoint. Every Dial error comes before anything of the client's
// was sent (the relay starts after the peer's 200); these are the ones a
// replica that just died or is going away causes: unreachable, hung up
// during the TLS handshake, a pooled connection closed or the stream reset
// before the answer. Identity and certificate errors and refusals by a
// live peer (401, 503) are not retried.
func ConnectRetryable(err error) bool {
	var de *hbone.DialError
	if errors.As(err, &de) {
		return de.Op == "dial" || de.Op == "tls"
	}
	return errors.Is(err, hbone.ErrConnClosed) || errors.Is(err, hbone.ErrStreamReset)
}

// Plan is the outbound decision for one connection.
type Plan struct {
	// Src is the source workload.
	Src *state.Workload
	route.Decision
}

// Decide is the pure outbound decision: the source workload by IP, then
// route.Route. An unknown source wraps ErrUnknownSource.
func Decide(snap *state.Snapshot, local route.Local, src netip.Addr, dst netip.AddrPort, opts route.Options) (Plan, error) {
	w := snap.WorkloadByNetworkIP(local.Network, src.Unmap())
	if w == nil {
		return Plan{}, fmt.Errorf("outbound from %s: %w", src, ErrUnknownSource)
	}
	d, err := route.Route(snap, w, dst, opts)
	if err != nil {
		return Plan{Src: w}, fmt.Errorf("outbound %s → %s: %w", w.UID, dst, err)
	}
	return Plan{Src: w, Decision: d}, nil
}

// Handle proxies one captured connection; it returns when the connection
// is done. ctx bounds the upstream dial (cancelled at the end of a
// graceful shutdown).
func (s *Server) Handle(ctx context.Context, c net.Conn) {
	info := conntrack.Info{Direction: accesslog.Outbound, Start: time.Now()}
	src, err := addrPort(c.RemoteAddr())
	if err != nil {
		s.refuse(c, info, ReasonNoOriginalDst, err)
		return
	}
	info.Src = src
	if info.Dst, err = s.cfg.OriginalDst(c); err != nil {
		s.refuse(c, info, ReasonNoOriginalDst, fmt.Errorf("original destination: %w", err))
		return
	}
	snap := s.cfg.Store.Snapshot()
	p, err := Decide(snap, s.cfg.Local, src.Addr(), info.Dst, s.cfg.RouteOptions)
	if p.Src != nil {
		info.SrcWorkload, info.SrcIdentity = p.Src.Name, conntrack.Identity(p.Src.Identity)
	}
	if err != nil {
		reason := ReasonNoRoute
		if errors.Is(err, ErrUnknownSource) {
			reason = ReasonUnknownSource
		}
		s.refuse(c, info, reason, err)
		return
	}

	var up net.Conn
	security := "mutual_tls"
	var avoid []netip.Addr
	for attempt := 1; ; attempt++ {
		info.DstWorkload = conntrack.Name(p.DstWorkload)
		info.DstIdentity = conntrack.Identity(p.ExpectedIdentity)
		if p.DstService != nil {
			info.Service = p.DstService.Hostname
		}
		switch p.Kind {
		case route.Direct, route.ViaWaypoint:
			info.Via = p.HBONEAddr
			req := hbone.DialRequest{
				Source: p.Src.Identity,
				Peer:   p.HBONEAddr,
				Target: hbone.Target{Authority: p.Target, ForwardedFor: src.Addr()},
			}
			if !p.ExpectedIdentity.IsZero() {
				req.ExpectedPeers = []spiffe.Identity{p.ExpectedIdentity}
			}
			var st *hbone.Stream
			st, err = s.cfg.Client.Dial(ctx, req)
			if err == nil {
				up = st
			}
		case route.Passthrough:
			security = "unknown"
			info.DstIdentity = ""
			up, err = s.cfg.Dial(ctx, "tcp", p.Target.String())
		default:
			s.refuse(c, info, ReasonDenied, fmt.Errorf("%s: %s", p.Kind, p.Reason))
			return
		}
		if err == nil || attempt >= MaxConnectAttempts || p.Kind == route.Passthrough || !ConnectRetryable(err) {
			break
		}
		// Nothing of the client's was sent: another replica may take it.
		avoid = append(avoid, p.HBONEAddr.Addr())
		opts := s.cfg.RouteOptions
		opts.Avoid = avoid
		next, derr := Decide(snap, s.cfg.Local, src.Addr(), info.Dst, opts)
		if derr != nil || next.Kind != p.Kind || slices.Contains(avoid, next.HBONEAddr.Addr()) {
			break // no other replica
		}
		s.cfg.Logger.Debug("connect failed, trying another endpoint", zap.Stringer("failed", p.HBONEAddr),
			zap.Stringer("next", next.HBONEAddr), zap.Error(err))
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.ConnectRetry()
		}
		p = next
	}
	if err != nil {
		// hbone's *DialError and *StatusError carry the likely cause.
		s.refuse(c, info, ReasonDialFailed, err)
		return
	}

	var rec *metrics.ConnRecorder
	if s.cfg.Metrics != nil {
		dstID := p.ExpectedIdentity
		if p.DstWorkload != nil {
			dstID = p.DstWorkload.Identity
		}
		if p.Kind == route.Passthrough {
			dstID = spiffe.Identity{}
		}
		mc := metrics.Conn{
			Reporter:    metrics.ReporterSource,
			Source:      conntrack.Peer(p.Src, p.Src.Identity),
			Destination: conntrack.Peer(p.DstWorkload, dstID),
			Security:    security,
		}
		conntrack.Service(&mc, p.DstService)
		rec = s.cfg.Metrics.Open(mc)
	}
	tc := s.cfg.Tracker.Begin(info, rec, c, up)
	tc.End(relay.Relay(c, up, tc.Counters()))
}

func (s *Server) refuse(c net.Conn, info conntrack.Info, reason string, err error) {
	relay.Abort(c)
	s.cfg.Tracker.Refused(info, reason, err)
}
