package inbound

import (
	"net/netip"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// How SourceIP chose the source address (constant strings, for logs).
const (
	// SourceRemote: no usable `forwarded: for=`; the connection's address.
	SourceRemote = "HBONE connection address"
	// SourceOwnWorkload: the forwarded address is a workload with the peer's identity.
	SourceOwnWorkload = "forwarded by the source workload's identity"
	// SourceWaypoint: the peer is a waypoint of the destination.
	SourceWaypoint = "forwarded by the destination's waypoint"
	// SourceUntrusted: the peer may not speak for the forwarded address; it
	// was ignored for the connection's address.
	SourceUntrusted = "forwarded address not trusted, HBONE connection address used"
)

// SourceIP chooses the client IP that L4 policy (ipBlocks) sees, that is
// logged, and that a transparent pod dial binds, for an HBONE stream from
// peer (verified identity) to dst (nil when the target was refused).
//
// forwarded, the address claimed by `forwarded: for=`, is trusted only
// from a peer that may speak for it:
//   - the state store maps it to a workload whose identity is peer: the
//     source ztunnel dials with its pod's certificate, so a peer vouches
//     only for the pods of its own identity; or
//   - peer is a waypoint of dst (bound to dst or to one of its services,
//     as route.InboundTarget's FromWaypoint): a waypoint forwards for every
//     client of the workloads behind it, and only those.
//
// Otherwise the claim is ignored and remote, the HBONE connection's remote
// address (the peer ztunnel's node IP, or the source pod's IP when ztunnel
// dials from inside the pod's network namespace), is used, as when the
// header is absent. remote rather than no source IP: TCP cannot forge it,
// it is what upstream ztunnel evaluates, and an invalid IP matches no
// ipBlocks, so a spoofer would slip past a DENY policy naming its real
// address — while with remote a DENY still applies and an ALLOW with
// ipBlocks only admits what the network really shows.
func SourceIP(snap *state.Snapshot, local route.Local, dst *state.Workload, peer spiffe.Identity, forwarded, remote netip.Addr) (netip.Addr, string) {
	forwarded, remote = forwarded.Unmap(), remote.Unmap()
	if !forwarded.IsValid() {
		return remote, SourceRemote
	}
	if w := snap.WorkloadByNetworkIP(local.Network, forwarded); w != nil && w.Identity == peer {
		return forwarded, SourceOwnWorkload
	}
	if dst != nil && isWaypointOf(snap, dst, peer) {
		return forwarded, SourceWaypoint
	}
	return remote, SourceUntrusted
}

// isWaypointOf reports whether peer is the identity of a waypoint of w:
// its workload-bound waypoint, or the waypoint (plain or weighted) of a
// service w is an endpoint of.
func isWaypointOf(snap *state.Snapshot, w *state.Workload, peer spiffe.Identity) bool {
	if gw := w.Waypoint; gw != nil && gatewayHasIdentity(snap, gw, peer) {
		return true
	}
	for key := range w.Proto.GetServices() {
		svc := snap.ServiceByKey(key)
		if svc == nil {
			continue
		}
		if svc.Waypoint != nil && gatewayHasIdentity(snap, svc.Waypoint, peer) {
			return true
		}
		for _, wg := range svc.WeightedWaypoints {
			if wg.Gateway != nil && gatewayHasIdentity(snap, wg.Gateway, peer) {
				return true
			}
		}
	}
	return false
}

// gatewayHasIdentity reports whether gw resolves to a workload with
// identity id: the workload at its address, or an endpoint of its service
// (by hostname or VIP); the lookup of route.InboundTarget.
func gatewayHasIdentity(snap *state.Snapshot, gw *state.Gateway, id spiffe.Identity) bool {
	var svc *state.Service
	if gw.IsHostname() {
		svc = snap.ServiceByHostname(gw.Namespace, gw.Hostname)
	} else {
		if w := snap.WorkloadByNetworkIP(gw.Addr.Network, gw.Addr.Addr); w != nil {
			return w.Identity == id
		}
		svc = snap.ServiceByNetworkVIP(gw.Addr.Network, gw.Addr.Addr)
	}
	if svc == nil {
		return false
	}
	for _, ep := range snap.EndpointsOf(svc) {
		if ep.Workload.Identity == id {
			return true
		}
	}
	return false
}
