package route

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Local describes the ztunnel deciding: its node and network.
type Local struct {
	// Node is this ztunnel's node name; "" disables the same-node check
	// (a single-process local-config setup).
	Node    string
	Network string
}

// Inbound is where an accepted HBONE stream goes.
type Inbound struct {
	// Workload is the destination pod (a local, enrolled workload).
	Workload *state.Workload
	// Target is the address to connect to: the pod IP and the authority's port.
	Target netip.AddrPort
	// FromWaypoint reports that the peer is the workload's waypoint.
	FromWaypoint bool
}

// Errors of InboundTarget; the HBONE server maps ErrWaypointBypass to 401
// and the others to 400/503 as it sees fit.
var (
	ErrUnknownDestination = errors.New("authority is not a known workload")
	ErrNotLocal           = errors.New("destination workload is not on this node")
	ErrNotEnrolled        = errors.New("destination workload does not accept HBONE")
	ErrWaypointBypass     = errors.New("destination workload has a waypoint and the peer is not it")
	ErrBadAuthority       = errors.New("authority has no port")
)

// InboundTarget checks an HBONE CONNECT's authority (ip:port) from a peer
// with a verified identity: the IP must be an enrolled workload on this
// node; if that workload is bound to a waypoint, only that waypoint's
// identity may connect (no bypass). L4 policy is evaluated afterwards, by
// the caller, with rbac.Evaluate and snap.PoliciesFor(Inbound.Workload).
func InboundTarget(snap *state.Snapshot, local Local, authority netip.AddrPort, peer spiffe.Identity) (Inbound, error) {
	ip := authority.Addr().Unmap()
	if authority.Port() == 0 {
		return Inbound{}, fmt.Errorf("inbound %s: %w", authority, ErrBadAuthority)
	}
	w := snap.WorkloadByNetworkIP(local.Network, ip)
	if w == nil {
		if svc := snap.ServiceByNetworkVIP(local.Network, ip); svc != nil {
			return Inbound{}, fmt.Errorf("inbound %s is service %s, not a pod: %w", authority, svc.Key, ErrUnknownDestination)
		}
		return Inbound{}, fmt.Errorf("inbound %s: %w", authority, ErrUnknownDestination)
	}
	if local.Node != "" && w.Node != local.Node {
		return Inbound{}, fmt.Errorf("inbound %s: workload %s is on node %q, this is %q: %w", authority, w.UID, w.Node, local.Node, ErrNotLocal)
	}
	if !w.HBONE() {
		return Inbound{}, fmt.Errorf("inbound %s: workload %s: %w", authority, w.UID, ErrNotEnrolled)
	}
	in := Inbound{Workload: w, Target: netip.AddrPortFrom(ip, authority.Port())}
	if gw := w.Waypoint; gw != nil {
		in.FromWaypoint = isGateway(snap, gw, func(wp *state.Workload) bool { return wp.Identity == peer })
		if !in.FromWaypoint {
			return Inbound{}, fmt.Errorf("inbound %s: workload %s, waypoint %s, peer %s: %w", authority, w.UID, gw, peer, ErrWaypointBypass)
		}
	}
	return in, nil
}
