package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/relay"
	"github.com/ambient-mesh/ambient/ztunnel/rbac"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Reasons logged for refused streams.
const (
	ReasonBadTarget  = "bad inbound target"
	ReasonBypass     = "waypoint bypassed"
	ReasonDialFailed = "destination pod unreachable"
	ReasonAccept     = "stream failed before accept"
)

// ErrNoWorkload: no local workload owns the address a TLS connection
// arrived on, so there is no certificate to present.
var ErrNoWorkload = errors.New("no workload at this address; is the pod enrolled and on this node?")

// ServerCertSource supplies the certificate presented for a destination
// workload's identity.
type ServerCertSource interface {
	ServerCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error)
}

// DialFunc connects to a pod on behalf of a client whose pod IP is src.
type DialFunc func(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error)

// PlainDial is the default DialFunc: a plain TCP dial from the node's
// address, with a 10 s timeout; src is ignored.
func PlainDial(ctx context.Context, _ netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	return d.DialContext(ctx, "tcp", dst.String())
}

// Config configures a Handler.
type Config struct {
	// Store is ztunnel's state; Local its node and network. Required.
	Store *state.Store
	Local route.Local
	// Certs supplies destination workloads' certificates. Required.
	Certs ServerCertSource
	// Dial connects to pods; default PlainDial.
	Dial DialFunc
	// Tracker records live connections and writes access log lines.
	// Required.
	Tracker *conntrack.Tracker
	// Metrics, if set, receives Istio TCP metrics (reporter=destination).
	Metrics *metrics.Metrics
	// Logger receives debug events, such as an ignored forwarded-for
	// address. Optional.
	Logger *zap.Logger
}

// Handler serves HBONE streams for local workloads.
type Handler struct {
	cfg Config
}

// New checks cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("inbound: Store is required")
	case cfg.Certs == nil:
		return nil, errors.New("inbound: Certs is required")
	case cfg.Tracker == nil:
		return nil, errors.New("inbound: Tracker is required")
	}
	if cfg.Dial == nil {
		cfg.Dial = PlainDial
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Handler{cfg: cfg}, nil
}

// GetCertificate is the hbone.ServerConfig.GetCertificate: the certificate
// of the workload owning the connection's local address.
func (h *Handler) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var ip netip.Addr
	if hello.Conn != nil {
		if ap, err := addrPort(hello.Conn.LocalAddr()); err == nil {
			ip = ap.Addr()
		}
	}
	w := h.cfg.Store.Snapshot().WorkloadByNetworkIP(h.cfg.Local.Network, ip)
	if w == nil {
		return nil, fmt.Errorf("inbound TLS to %s: %w", ip, ErrNoWorkload)
	}
	cert, err := h.cfg.Certs.ServerCertificate(hello.Context(), w.Identity)
	if err != nil {
		return nil, fmt.Errorf("inbound TLS to %s: certificate for %s: %w", ip, w.Identity, err)
	}
	return cert, nil
}

// Request is what Authorize decides on.
type Request struct {
	Authority netip.AddrPort
	Peer      spiffe.Identity
	// ForwardedFor is the client IP the peer claims (`forwarded: for=`),
	// zero if none; SourceIP decides whether to believe it.
	ForwardedFor netip.Addr
	// RemoteIP is the HBONE connection's remote IP.
	RemoteIP netip.Addr
}

// Verdict is the outcome of Authorize.
type Verdict struct {
	// Status is the CONNECT answer: 200 to go on, else 400, 401.
	Status int
	// Inbound is the target (valid when InboundTarget succeeded).
	Inbound route.Inbound
	// SrcIP is the client IP policy saw (chosen by SourceIP, also when the
	// target was refused), and SrcFrom how it was chosen (Source*).
	SrcIP   netip.Addr
	SrcFrom string
	// RBAC is the policy decision (when it was evaluated).
	RBAC rbac.Decision
	// Reason is a constant string for logs.
	Reason string
}

// Authorize is the pure inbound decision: target check, source IP
// (SourceIP), then L4 policy. err explains a non-200 status.
func Authorize(snap *state.Snapshot, local route.Local, req Request) (Verdict, error) {
	in, err := route.InboundTarget(snap, local, req.Authority, req.Peer)
	src, from := SourceIP(snap, local, in.Workload, req.Peer, req.ForwardedFor, req.RemoteIP)
	if err != nil {
		v := Verdict{Status: http.StatusBadRequest, SrcIP: src, SrcFrom: from, Reason: ReasonBadTarget}
		if errors.Is(err, route.ErrWaypointBypass) {
			v.Status, v.Reason = http.StatusUnauthorized, ReasonBypass
		}
		return v, err
	}
	peer := req.Peer
	d := rbac.Evaluate(snap.PoliciesFor(in.Workload), rbac.Conn{
		SrcIP:       src,
		DstIP:       in.Target.Addr(),
		DstPort:     in.Target.Port(),
		SrcIdentity: &peer,
	})
	v := Verdict{Status: http.StatusOK, Inbound: in, SrcIP: src, SrcFrom: from, RBAC: d, Reason: d.Reason}
	if !d.Allow {
		v.Status = http.StatusUnauthorized
		return v, fmt.Errorf("inbound %s from %s: %s %s", req.Authority, req.Peer, d.Reason, d.PolicyName())
	}
	return v, nil
}

// ServeHBONE implements hbone.Handler.
func (h *Handler) ServeHBONE(ctx context.Context, r *hbone.Request) {
	info := conntrack.Info{Direction: accesslog.Inbound, Start: time.Now(), Dst: r.Target.Authority,
		SrcIdentity: conntrack.Identity(r.Peer)}
	remote, _ := addrPort(r.RemoteAddr)
	snap := h.cfg.Store.Snapshot()
	v, err := Authorize(snap, h.cfg.Local, Request{Authority: r.Target.Authority, Peer: r.Peer,
		ForwardedFor: r.ForwardedFor, RemoteIP: remote.Addr()})
	src := v.SrcIP
	if v.SrcFrom == SourceUntrusted {
		h.cfg.Logger.Debug("untrusted forwarded-for ignored",
			zap.Stringer("forwarded_for", r.ForwardedFor), zap.Stringer("peer", r.Peer),
			zap.Stringer("remote", remote.Addr()), zap.Stringer("dst", r.Target.Authority))
	}
	info.Src = netip.AddrPortFrom(src, 0)
	srcW := snap.WorkloadByNetworkIP(h.cfg.Local.Network, src)
	info.SrcWorkload = conntrack.Name(srcW)
	if w := v.Inbound.Workload; w != nil {
		info.DstWorkload, info.DstIdentity = w.Name, conntrack.Identity(w.Identity)
	}
	if err != nil {
		_ = r.Reject(v.Status)
		h.cfg.Tracker.Refused(info, v.Reason, err)
		return
	}
	info.Dst = v.Inbound.Target
	up, err := h.cfg.Dial(ctx, src, v.Inbound.Target)
	if err != nil {
		_ = r.Reject(http.StatusServiceUnavailable)
		h.cfg.Tracker.Refused(info, ReasonDialFailed, fmt.Errorf("dial %s: %w", v.Inbound.Target, err))
		return
	}
	st, err := r.Accept()
	if err != nil {
		up.Close()
		h.cfg.Tracker.Refused(info, ReasonAccept, err)
		return
	}
	var rec *metrics.ConnRecorder
	if h.cfg.Metrics != nil {
		rec = h.cfg.Metrics.Open(metrics.Conn{
			Reporter:    metrics.ReporterDestination,
			Source:      conntrack.Peer(srcW, r.Peer),
			Destination: conntrack.Peer(v.Inbound.Workload, v.Inbound.Workload.Identity),
			Security:    "mutual_tls",
		})
	}
	tc := h.cfg.Tracker.Begin(info, rec, st, up)
	tc.End(relay.Relay(st, up, tc.Counters()))
}

func addrPort(a net.Addr) (netip.AddrPort, error) {
	if a == nil {
		return netip.AddrPort{}, errors.New("no address")
	}
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

// NewServer builds the HBONE server for h, with bundle as the trust bundle
// client certificates must chain to.
func NewServer(h *Handler, bundle func() spiffe.Bundle, log *zap.Logger, limits hbone.Limits) (*hbone.Server, error) {
	s, err := hbone.NewServer(hbone.ServerConfig{
		GetCertificate: h.GetCertificate,
		Bundle:         bundle,
		Handler:        h,
		Logger:         log,
		Limits:         limits,
	})
	if err != nil {
		return nil, fmt.Errorf("inbound HBONE server: %w", err)
	}
	return s, nil
}
