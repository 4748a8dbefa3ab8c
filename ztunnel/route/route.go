package route

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Kind is the kind of outbound route.
type Kind int

// Route kinds.
const (
	// Direct: HBONE to the destination pod's ztunnel (HBONEAddr = pod IP:15008).
	Direct Kind = iota + 1
	// ViaWaypoint: HBONE to a waypoint (HBONEAddr = waypoint pod IP:15008).
	ViaWaypoint
	// Passthrough: plain TCP to Target (destination not in the mesh or not
	// HBONE-capable).
	Passthrough
	// Deny: the connection must be refused.
	Deny
)

func (k Kind) String() string {
	switch k {
	case Direct:
		return "direct"
	case ViaWaypoint:
		return "waypoint"
	case Passthrough:
		return "passthrough"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Decision is where an outbound connection goes.
type Decision struct {
	Kind Kind
	// HBONEAddr is the address to dial for HBONE (Direct, ViaWaypoint).
	HBONEAddr netip.AddrPort
	// Target is the CONNECT authority for HBONE — the pod IP and target
	// port for Direct; for ViaWaypoint the original service VIP:port, or
	// the pod IP:port for a workload-bound waypoint — and the address to
	// dial for Passthrough.
	Target netip.AddrPort
	// DstWorkload is the destination pod when known (not for service
	// traffic sent to a service waypoint, which picks the pod itself).
	DstWorkload *state.Workload
	// DstService is the service when the destination was a service VIP.
	DstService *state.Service
	// Waypoint is the waypoint pod chosen for ViaWaypoint.
	Waypoint *state.Workload
	// ExpectedIdentity is the identity the HBONE peer must present: the
	// destination pod's or the waypoint pod's.
	ExpectedIdentity spiffe.Identity
	// SameNode reports that the HBONE peer runs on the source's node.
	SameNode bool
	// Reason is a constant string for logs.
	Reason string
}

// Reasons.
const (
	ReasonToWorkload         = "destination workload accepts HBONE"
	ReasonServiceEndpoint    = "service endpoint accepts HBONE"
	ReasonServiceWaypoint    = "service has a waypoint"
	ReasonWorkloadWaypoint   = "workload has a waypoint"
	ReasonNotInMesh          = "destination not in the mesh"
	ReasonNotHBONE           = "destination workload does not accept HBONE"
	ReasonServiceNotVisible  = "service is visible only to its own namespace"
	ReasonServicePassthrough = "service load balancing mode is PASSTHROUGH"
)

// Errors; the returned errors wrap them and name the service or waypoint.
var (
	ErrNoHealthyEndpoints = errors.New("no healthy endpoints")
	ErrWaypointNotFound   = errors.New("waypoint not found")
	ErrUnknownSource      = errors.New("unknown source workload")
)

// Rand is the randomness Route needs; *math/rand/v2.Rand implements it.
type Rand interface{ IntN(n int) int }

// Options tune Route.
type Options struct {
	// Rand picks among equally preferred endpoints; nil uses math/rand/v2.
	Rand Rand
	// HBONEPort is the port of destination ztunnels (default 15008).
	HBONEPort uint16
	// Avoid lists endpoint addresses a connection attempt to just failed:
	// an endpoint with one of them is picked only when no other is usable,
	// so the caller's retry goes to another replica.
	Avoid []netip.Addr
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// Route decides where a connection from src to dst goes. It follows
// upstream ztunnel: a service VIP uses the service's waypoint unless src is
// that waypoint, else picks a healthy endpoint (preferring, by default, the
// source's node, then at random weighted by capacity); a workload IP goes to
// that workload, through its workload waypoint if it has one; a workload
// that does not accept HBONE, or an IP unknown to the mesh, is passed
// through in plaintext, as is a service whose load balancing mode is
// PASSTHROUGH (to the original destination). A service with visibility
// NAMESPACE is denied to other namespaces. A service with no usable
// endpoint for the port is an error wrapping ErrNoHealthyEndpoints
// (upstream: NoHealthyUpstream); an unresolvable waypoint wraps
// ErrWaypointNotFound or ErrNoHealthyEndpoints.
func Route(snap *state.Snapshot, src *state.Workload, dst netip.AddrPort, opts Options) (Decision, error) {
	if src == nil {
		return Decision{}, fmt.Errorf("route to %s: %w", dst, ErrUnknownSource)
	}
	if opts.Rand == nil {
		opts.Rand = globalRand{}
	}
	if opts.HBONEPort == 0 {
		opts.HBONEPort = state.DefaultHBONEPort
	}
	r := router{snap: snap, src: src, opts: opts}
	dstIP := dst.Addr().Unmap()
	dst = netip.AddrPortFrom(dstIP, dst.Port())

	if svc := snap.ServiceByNetworkVIP(src.Network, dstIP); svc != nil {
		if svc.Proto.GetVisibility() == workloadapi.Service_NAMESPACE && src.Namespace != svc.Namespace {
			return Decision{Kind: Deny, DstService: svc, Reason: ReasonServiceNotVisible}, nil
		}
		if gw := r.serviceWaypoint(svc); gw != nil && !r.srcIsGateway(gw) {
			wp, hbone, err := r.resolveGateway(gw, dstIP)
			if err != nil {
				return Decision{}, fmt.Errorf("route to service %s: %w", svc.Key, err)
			}
			return r.viaWaypoint(wp, hbone, dst, nil, svc, ReasonServiceWaypoint), nil
		}
		if svc.Proto.GetLoadBalancing().GetMode() == workloadapi.LoadBalancing_PASSTHROUGH {
			// Upstream's OriginalDestination: no endpoint selection.
			return Decision{Kind: Passthrough, Target: dst, DstService: svc, Reason: ReasonServicePassthrough}, nil
		}
		ep, ip, port, err := r.pickEndpoint(svc, dst.Port(), false, dstIP)
		if err != nil {
			return Decision{}, fmt.Errorf("route to service %s port %d: %w", svc.Key, dst.Port(), err)
		}
		return r.toWorkload(ep, netip.AddrPortFrom(ip, port), svc, ReasonServiceEndpoint)
	}
	if w := snap.WorkloadByNetworkIP(src.Network, dstIP); w != nil {
		return r.toWorkload(w, dst, nil, ReasonToWorkload)
	}
	return Decision{Kind: Passthrough, Target: dst, Reason: ReasonNotInMesh}, nil
}

type router struct {
	snap *state.Snapshot
	src  *state.Workload
	opts Options
}

func (r *router) toWorkload(w *state.Workload, target netip.AddrPort, svc *state.Service, reason string) (Decision, error) {
	if gw := w.Waypoint; gw != nil && !r.srcIsGateway(gw) {
		wp, hbone, err := r.resolveGateway(gw, target.Addr())
		if err != nil {
			return Decision{}, fmt.Errorf("route to workload %s: %w", w.UID, err)
		}
		return r.viaWaypoint(wp, hbone, target, w, svc, ReasonWorkloadWaypoint), nil
	}
	if !w.HBONE() {
		return Decision{Kind: Passthrough, Target: target, DstWorkload: w, DstService: svc, Reason: ReasonNotHBONE}, nil
	}
	return Decision{
		Kind:             Direct,
		HBONEAddr:        netip.AddrPortFrom(target.Addr(), r.opts.HBONEPort),
		Target:           target,
		DstWorkload:      w,
		DstService:       svc,
		ExpectedIdentity: w.Identity,
		SameNode:         r.sameNode(w),
		Reason:           reason,
	}, nil
}

func (r *router) viaWaypoint(wp *state.Workload, hbone netip.AddrPort, target netip.AddrPort, dst *state.Workload, svc *state.Service, reason string) Decision {
	return Decision{
		Kind:             ViaWaypoint,
		HBONEAddr:        hbone,
		Target:           target,
		DstWorkload:      dst,
		DstService:       svc,
		Waypoint:         wp,
		ExpectedIdentity: wp.Identity,
		SameNode:         r.sameNode(wp),
		Reason:           reason,
	}
}

func (r *router) sameNode(w *state.Workload) bool {
	return r.src.Node != "" && w.Node == r.src.Node
}

// serviceWaypoint returns the waypoint to use for svc: one of the weighted
// waypoints when set (by weight), else the single waypoint, else nil.
func (r *router) serviceWaypoint(svc *state.Service) *state.Gateway {
	var total int
	for _, ww := range svc.WeightedWaypoints {
		total += int(ww.Weight)
	}
	if total == 0 {
		return svc.Waypoint
	}
	n := r.opts.Rand.IntN(total)
	for _, ww := range svc.WeightedWaypoints {
		if n < int(ww.Weight) {
			return ww.Gateway
		}
		n -= int(ww.Weight)
	}
	return svc.Waypoint // unreachable
}

// srcIsGateway reports whether the source workload is (one of the pods
// of) gateway gw, so traffic from a waypoint is not sent back to it.
func (r *router) srcIsGateway(gw *state.Gateway) bool {
	return isGateway(r.snap, gw, func(w *state.Workload) bool { return w == r.src || w.UID == r.src.UID })
}

// isGateway reports whether match holds for a workload that gw names.
func isGateway(snap *state.Snapshot, gw *state.Gateway, match func(*state.Workload) bool) bool {
	var svc *state.Service
	if gw.IsHostname() {
		svc = snap.ServiceByHostname(gw.Namespace, gw.Hostname)
	} else {
		if w := snap.WorkloadByNetworkIP(gw.Addr.Network, gw.Addr.Addr); w != nil {
			return match(w)
		}
		svc = snap.ServiceByNetworkVIP(gw.Addr.Network, gw.Addr.Addr)
	}
	if svc == nil {
		return false
	}
	for _, ep := range snap.EndpointsOf(svc) {
		if match(ep.Workload) {
			return true
		}
	}
	return false
}

// resolveGateway finds the pod to send HBONE to for gw, and the address
// to dial: the workload at its address (on the gateway's port), or an
// endpoint of its service (hostname or VIP) for the HBONE port, as
// upstream's fetch_waypoint does.
func (r *router) resolveGateway(gw *state.Gateway, dstIP netip.Addr) (*state.Workload, netip.AddrPort, error) {
	var svc *state.Service
	if gw.IsHostname() {
		svc = r.snap.ServiceByHostname(gw.Namespace, gw.Hostname)
	} else {
		if w := r.snap.WorkloadByNetworkIP(gw.Addr.Network, gw.Addr.Addr); w != nil {
			return w, netip.AddrPortFrom(gw.Addr.Addr, gw.Port), nil
		}
		svc = r.snap.ServiceByNetworkVIP(gw.Addr.Network, gw.Addr.Addr)
	}
	if svc == nil {
		return nil, netip.AddrPort{}, fmt.Errorf("waypoint %s: %w (is the waypoint deployed?)", gw, ErrWaypointNotFound)
	}
	w, ip, port, err := r.pickEndpoint(svc, gw.Port, true, dstIP)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("waypoint %s: %w", gw, err)
	}
	return w, netip.AddrPortFrom(ip, port), nil
}

// pickEndpoint chooses an endpoint of svc for svcPort as upstream's
// load_balance and find_upstream_from_service:
//   - the service must define svcPort (in waypoint mode an endpoint with an
//     application tunnel may do without);
//   - the endpoint must be healthy (unless the health policy is ALLOW_ALL),
//     have an address on the source's network, a non-zero capacity and a
//     target port: its own mapping, else the service's non-zero target, else
//     (with an application tunnel) the service port;
//   - among those, the best ranked by the service's routing preferences in
//     STRICT or FAILOVER mode (istiod-lite sets them for PreferClose and
//     internalTrafficPolicy: Local); by default all rank alike, as upstream:
//     a Service spreads its connections over every replica on every node;
//   - then at random weighted by capacity.
//
// It returns the workload, its address (same family as dstIP when it has
// one) and the target port. It does not allocate.
func (r *router) pickEndpoint(svc *state.Service, svcPort uint16, waypointMode bool, dstIP netip.Addr) (*state.Workload, netip.Addr, uint16, error) {
	lb := svc.Proto.GetLoadBalancing()
	prefs, strict := defaultPrefs, false
	switch lb.GetMode() {
	case workloadapi.LoadBalancing_STRICT:
		prefs, strict = lb.GetRoutingPreference(), true
	case workloadapi.LoadBalancing_FAILOVER:
		prefs = lb.GetRoutingPreference()
	}
	allowUnhealthy := lb.GetHealthPolicy() == workloadapi.LoadBalancing_ALLOW_ALL
	svcTarget, svcHasPort := svc.Ports[svcPort]
	if !svcHasPort && !waypointMode {
		return nil, netip.Addr{}, 0, fmt.Errorf("service has no port %d: %w", svcPort, ErrNoHealthyEndpoints)
	}

	usable := func(ep state.Endpoint) (uint16, bool) {
		w := ep.Workload
		if (!w.Healthy && !allowUnhealthy) || len(w.Addrs) == 0 || w.Network != r.src.Network || w.Capacity == 0 {
			return 0, false
		}
		appTunnel := w.Proto.GetApplicationTunnel() != nil
		if !svcHasPort && !appTunnel {
			return 0, false
		}
		if tp, ok := ep.TargetPort(svcPort); ok && tp != 0 {
			return tp, true
		}
		if svcTarget != 0 {
			return svcTarget, true
		}
		if appTunnel {
			return svcPort, true
		}
		return 0, false
	}

	eps := r.snap.EndpointsOf(svc)
	if len(r.opts.Avoid) > 0 {
		preferred := usable
		usable = func(ep state.Endpoint) (uint16, bool) {
			if r.avoided(ep.Workload) {
				return 0, false
			}
			return preferred(ep)
		}
		if !anyUsable(eps, usable) {
			usable = preferred // every usable endpoint failed: try them again
		}
	}
	best, total := -1, 0
	for _, ep := range eps {
		if _, ok := usable(ep); !ok {
			continue
		}
		rank := r.rank(prefs, ep.Workload)
		if strict && rank < len(prefs) {
			continue
		}
		switch {
		case rank > best:
			best, total = rank, int(ep.Workload.Capacity)
		case rank == best:
			total += int(ep.Workload.Capacity)
		}
	}
	if best < 0 {
		return nil, netip.Addr{}, 0, ErrNoHealthyEndpoints
	}
	n := r.opts.Rand.IntN(total)
	for _, ep := range eps {
		port, ok := usable(ep)
		if !ok || r.rank(prefs, ep.Workload) != best {
			continue
		}
		if n < int(ep.Workload.Capacity) {
			return ep.Workload, pickAddr(ep.Workload, dstIP), port, nil
		}
		n -= int(ep.Workload.Capacity)
	}
	panic("route: weighted pick out of range") // total counted the same set
}

// avoided reports whether one of w's addresses is in opts.Avoid.
func (r *router) avoided(w *state.Workload) bool {
	for _, a := range w.Addrs {
		if slices.Contains(r.opts.Avoid, a) {
			return true
		}
	}
	return false
}

func anyUsable(eps []state.Endpoint, usable func(state.Endpoint) (uint16, bool)) bool {
	for _, ep := range eps {
		if _, ok := usable(ep); ok {
			return true
		}
	}
	return false
}

// defaultPrefs is empty: without a load-balancing mode every endpoint ranks
// alike. (DESIGN.md said "same node first"; that sends all of a node's
// clients to one replica and defeats load balancing, so we follow upstream.)
var defaultPrefs []workloadapi.LoadBalancing_Scope

// rank counts how many leading routing preferences w shares with the
// source, as upstream's FAILOVER ranking.
func (r *router) rank(prefs []workloadapi.LoadBalancing_Scope, w *state.Workload) int {
	src := r.src.Proto
	dst := w.Proto
	n := 0
	for _, p := range prefs {
		var same bool
		switch p {
		case workloadapi.LoadBalancing_NETWORK:
			same = w.Network == r.src.Network
		case workloadapi.LoadBalancing_REGION:
			same = src.GetLocality().GetRegion() == dst.GetLocality().GetRegion()
		case workloadapi.LoadBalancing_ZONE:
			same = src.GetLocality().GetZone() == dst.GetLocality().GetZone()
		case workloadapi.LoadBalancing_SUBZONE:
			same = src.GetLocality().GetSubzone() == dst.GetLocality().GetSubzone()
		case workloadapi.LoadBalancing_NODE:
			same = r.src.Node != "" && w.Node == r.src.Node
		case workloadapi.LoadBalancing_CLUSTER:
			same = src.GetClusterId() == dst.GetClusterId()
		default:
			same = true
		}
		if !same {
			break
		}
		n++
	}
	return n
}

// pickAddr returns w's first address of dstIP's family, else its first.
func pickAddr(w *state.Workload, dstIP netip.Addr) netip.Addr {
	for _, a := range w.Addrs {
		if a.Is4() == dstIP.Is4() {
			return a
		}
	}
	return w.Addrs[0]
}
