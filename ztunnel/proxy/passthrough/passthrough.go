package passthrough

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/inbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/outbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/relay"
	"github.com/ambient-mesh/ambient/ztunnel/rbac"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Reasons logged for refused connections.
const (
	ReasonNoOriginalDst = "original destination unknown"
	ReasonNotLocal      = "destination is not a local enrolled workload"
	ReasonStrict        = "STRICT mTLS: plaintext refused"
	ReasonDialFailed    = "destination pod unreachable"
)

// Errors of Decide.
var (
	ErrNotLocal = errors.New("destination is not an enrolled workload on this node")
	ErrDenied   = errors.New("plaintext connection denied by policy")
)

// Config configures a Server.
type Config struct {
	// Store is ztunnel's state; Local its node and network. Required.
	Store *state.Store
	Local route.Local
	// OriginalDst defaults to outbound.LocalAddr.
	OriginalDst outbound.OriginalDstFunc
	// Dial connects to pods; default inbound.PlainDial.
	Dial inbound.DialFunc
	// Tracker records live connections and writes access log lines.
	// Required.
	Tracker *conntrack.Tracker
	// Metrics, if set, receives Istio TCP metrics (reporter=destination).
	Metrics *metrics.Metrics
}

// Server handles plaintext inbound connections.
type Server struct {
	cfg Config
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Tracker == nil {
		return nil, errors.New("passthrough: Store and Tracker are required")
	}
	if cfg.OriginalDst == nil {
		cfg.OriginalDst = outbound.LocalAddr
	}
	if cfg.Dial == nil {
		cfg.Dial = inbound.PlainDial
	}
	return &Server{cfg: cfg}, nil
}

// Verdict is the outcome of Decide.
type Verdict struct {
	Workload *state.Workload
	RBAC     rbac.Decision
	Reason   string
}

// Decide is the pure plaintext inbound decision. A non-nil error wraps
// ErrNotLocal or ErrDenied.
func Decide(snap *state.Snapshot, local route.Local, src netip.Addr, dst netip.AddrPort) (Verdict, error) {
	w := snap.WorkloadByNetworkIP(local.Network, dst.Addr().Unmap())
	if w == nil || !w.HBONE() || (local.Node != "" && w.Node != local.Node) {
		return Verdict{Workload: w, Reason: ReasonNotLocal}, fmt.Errorf("plaintext to %s: %w", dst, ErrNotLocal)
	}
	policies := snap.PoliciesFor(w)
	if rbac.RequiresMTLS(policies) {
		return Verdict{Workload: w, Reason: ReasonStrict}, fmt.Errorf("plaintext %s → %s (%s): %w: %s", src, dst, w.UID, ErrDenied, ReasonStrict)
	}
	d := rbac.Evaluate(policies, rbac.Conn{SrcIP: src.Unmap(), DstIP: dst.Addr().Unmap(), DstPort: dst.Port()})
	v := Verdict{Workload: w, RBAC: d, Reason: d.Reason}
	if !d.Allow {
		return v, fmt.Errorf("plaintext %s → %s (%s): %w: %s %s", src, dst, w.UID, ErrDenied, d.Reason, d.PolicyName())
	}
	return v, nil
}

// Handle proxies one plaintext connection; it returns when it is done.
func (s *Server) Handle(ctx context.Context, c net.Conn) {
	info := conntrack.Info{Direction: accesslog.InboundPlaintext, Start: time.Now()}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		info.Src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	var err error
	if info.Dst, err = s.cfg.OriginalDst(c); err != nil {
		s.refuse(c, info, ReasonNoOriginalDst, fmt.Errorf("original destination: %w", err))
		return
	}
	snap := s.cfg.Store.Snapshot()
	srcW := snap.WorkloadByNetworkIP(s.cfg.Local.Network, info.Src.Addr())
	info.SrcWorkload = conntrack.Name(srcW)
	v, err := Decide(snap, s.cfg.Local, info.Src.Addr(), info.Dst)
	if v.Workload != nil {
		info.DstWorkload, info.DstIdentity = v.Workload.Name, conntrack.Identity(v.Workload.Identity)
	}
	if err != nil {
		s.refuse(c, info, v.Reason, err)
		return
	}
	up, err := s.cfg.Dial(ctx, info.Src.Addr(), info.Dst)
	if err != nil {
		s.refuse(c, info, ReasonDialFailed, fmt.Errorf("dial %s: %w", info.Dst, err))
		return
	}
	var rec *metrics.ConnRecorder
	if s.cfg.Metrics != nil {
		rec = s.cfg.Metrics.Open(metrics.Conn{
			Reporter:    metrics.ReporterDestination,
			Source:      plaintextPeer(srcW),
			Destination: conntrack.Peer(v.Workload, v.Workload.Identity),
			Security:    "unknown",
		})
	}
	tc := s.cfg.Tracker.Begin(info, rec, c, up)
	tc.End(relay.Relay(c, up, tc.Counters()))
}

func (s *Server) refuse(c net.Conn, info conntrack.Info, reason string, err error) {
	relay.Abort(c)
	s.cfg.Tracker.Refused(info, reason, err)
}

// plaintextPeer labels a plaintext client: its workload if known, but no
// principal, since none was proven.
func plaintextPeer(w *state.Workload) metrics.Peer {
	p := conntrack.Peer(w, spiffe.Identity{})
	p.Principal = ""
	return p
}
