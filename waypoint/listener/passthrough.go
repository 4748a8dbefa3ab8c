package listener

import (
	"context"
	"io"
	"net/http"
	"net/netip"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// PassthroughPeer decides where an opaque (non-HTTP) tunnel goes: the
// HBONE peer of the pod that owns the authority's IP when the snapshot
// knows it (with its identity), else that IP on tunnelPort.
func PassthroughPeer(snap *state.Snapshot, authority netip.AddrPort, tunnelPort uint16) (peer netip.AddrPort, id spiffe.Identity) {
	if e := snap.EndpointByIP(authority.Addr()); e != nil {
		return e.Tunnel, e.Identity
	}
	return netip.AddrPortFrom(authority.Addr(), tunnelPort), spiffe.Identity{}
}

// passthrough relays an opaque tunnel to its destination over HBONE.
func (l *Listener) passthrough(ctx context.Context, r *hbone.Request, snap *state.Snapshot, t *tunnel) {
	peer, id := PassthroughPeer(snap, r.Authority, l.cfg.TunnelPort)
	var expect []spiffe.Identity
	if !id.IsZero() {
		expect = []spiffe.Identity{id}
	}
	up, err := l.cfg.Tunnels.Dial(ctx, hbone.DialRequest{
		Source: l.cfg.Identity, Peer: peer, ExpectedPeers: expect,
		Target: hbone.Target{Authority: r.Authority, ForwardedFor: t.client, Baggage: r.Baggage, Traceparent: r.Traceparent},
	})
	if err != nil {
		l.log.Info("passthrough dial failed", zap.Stringer("authority", r.Authority), zap.Stringer("peer", peer), zap.Error(err))
		_ = r.Reject(http.StatusServiceUnavailable)
		return
	}
	down, err := r.Accept()
	if err != nil {
		up.Close()
		return
	}
	var sent, recv int64
	done := make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(done)
		var err error
		if recv, err = io.Copy(down, up); err != nil {
			up.Close()
			down.Close()
			return
		}
		down.CloseWrite()
	}()
	var err2 error
	if sent, err2 = io.Copy(up, down); err2 != nil {
		up.Close()
		down.Close()
	} else {
		up.CloseWrite()
	}
	<-done
	up.Close()
	down.Close()
	l.log.Info("passthrough", zap.String("source_principal", t.peerURI), zap.Stringer("authority", r.Authority),
		zap.Stringer("peer", peer), zap.Int64("bytes_sent", sent), zap.Int64("bytes_received", recv))
}
