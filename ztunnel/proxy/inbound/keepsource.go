package inbound

import (
	"context"
	"net"
	"net/netip"

	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// KeepSource reports whether ztunnel's connection to a local pod keeps
// src, the client IP SourceIP chose, as its source address. DESIGN.md
// ("Data paths"): the client's pod IP is kept where the client is on
// another node. So it is kept only for a workload the state places on
// another node; not for a client on this node (its own pod IP is local,
// and the same-node path is short anyway), not for an address the state
// does not know (a peer ztunnel's node IP when a forwarded-for claim was
// not trusted), not for a host-network workload (it shares the node's IP),
// and not without a node name (one process serving several nodes from a
// local config).
func KeepSource(snap *state.Snapshot, local route.Local, src netip.Addr) bool {
	src = src.Unmap()
	if !src.IsValid() || local.Node == "" {
		return false
	}
	w := snap.WorkloadByNetworkIP(local.Network, src)
	return w != nil && !w.HostNetwork && w.Node != "" && w.Node != local.Node
}

// SourceKeepingDial returns a DialFunc that connects with keep (normally
// TransparentDialer()) when KeepSource says the client's IP is kept, and
// with PlainDial otherwise. Keeping the source needs capture: the pod's
// answers go to the client's IP and only the capture program brings them
// back to ztunnel's socket.
func SourceKeepingDial(store *state.Store, local route.Local, keep DialFunc) DialFunc {
	return func(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
		if KeepSource(store.Snapshot(), local, src) {
			return keep(ctx, src, dst)
		}
		return PlainDial(ctx, src, dst)
	}
}
