//go:build linux

package captureagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteVeths resolves a pod's host-side interface from the node's route to
// the pod address, as routed CNIs (Calico-like, and the local cluster) set
// it up: a direct /32 (/128) route via the host end of the pod's veth. The
// route must have no gateway and point to a veth or netkit device; anything
// else (the default route, an address of the node) is ErrNoVeth.
type RouteVeths struct {
	// Handle is a netlink handle of the node's network namespace; nil means
	// the calling thread's namespace.
	Handle *netlink.Handle
}

// HostVeth implements VethResolver.
func (r RouteVeths) HostVeth(podIP netip.Addr) (int, error) {
	h := handleOrDefault(r.Handle)
	routes, err := h.RouteGet(podIP.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("route to pod %s: %w", podIP, err)
	}
	if len(routes) == 0 {
		return 0, fmt.Errorf("route to pod %s: %w: no route", podIP, ErrNoVeth)
	}
	rt := routes[0]
	if rt.Gw != nil || rt.Type != unix.RTN_UNICAST || rt.LinkIndex <= 0 {
		return 0, fmt.Errorf("route to pod %s is not a direct route to a pod interface (gateway %v, type %d): %w", podIP, rt.Gw, rt.Type, ErrNoVeth)
	}
	link, err := h.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return 0, fmt.Errorf("route to pod %s: interface %d: %w", podIP, rt.LinkIndex, err)
	}
	switch link.Type() {
	case "veth", "netkit":
		return rt.LinkIndex, nil
	}
	return 0, fmt.Errorf("route to pod %s leaves by %s (%s), not a veth (bridge-mode CNIs are not supported): %w",
		podIP, link.Attrs().Name, link.Type(), ErrNoVeth)
}

// NodeUplink finds the node's uplink: the interface holding NodeIP, or, when
// NodeIP is not set, the interface of the main table's default route.
type NodeUplink struct {
	NodeIP netip.Addr
	// Handle is a netlink handle of the node's network namespace; nil means
	// the calling thread's namespace.
	Handle *netlink.Handle
}

// Uplink implements UplinkResolver.
func (u NodeUplink) Uplink() (int, error) {
	h := handleOrDefault(u.Handle)
	if u.NodeIP.IsValid() {
		return u.byAddress(h)
	}
	return defaultRouteLink(h)
}

func (u NodeUplink) byAddress(h *netlink.Handle) (int, error) {
	family := netlink.FAMILY_V4
	if u.NodeIP.Unmap().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(nil, family)
	if err != nil {
		return 0, fmt.Errorf("find uplink: list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != u.NodeIP.Unmap() {
			continue
		}
		link, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("find uplink: interface %d: %w", a.LinkIndex, err)
		}
		if link.Attrs().Flags&net.FlagLoopback != 0 {
			return 0, fmt.Errorf("find uplink: node IP %s is on %s; give the address of the interface facing the other nodes (--node-ip)", u.NodeIP, link.Attrs().Name)
		}
		return a.LinkIndex, nil
	}
	return 0, fmt.Errorf("find uplink: node IP %s is on no interface of this network namespace (is the agent running with hostNetwork?)", u.NodeIP)
}

func defaultRouteLink(h *netlink.Handle) (int, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteList(nil, family)
		if err != nil {
			return 0, fmt.Errorf("find uplink: list routes: %w", err)
		}
		for _, rt := range routes {
			if isDefault(rt.Dst) && rt.LinkIndex > 0 {
				return rt.LinkIndex, nil
			}
		}
	}
	return 0, errors.New("find uplink: no default route; set the node IP (--node-ip, from status.hostIP) to pick the uplink")
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

func handleOrDefault(h *netlink.Handle) *netlink.Handle {
	if h != nil {
		return h
	}
	// A zero Handle uses sockets of the calling thread's network namespace.
	return &netlink.Handle{}
}
