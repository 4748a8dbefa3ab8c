package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CreateUnderlay creates the underlay bridge in the root namespace with
// RootAddr on it. Idempotent.
func CreateUnderlay() error {
	br, err := netlink.LinkByName(Bridge)
	if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = Bridge
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", Bridge, err)
		}
		if br, err = netlink.LinkByName(Bridge); err != nil {
			return fmt.Errorf("find bridge %s: %w", Bridge, err)
		}
	}
	addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(RootAddr, UnderlayPrefix.Bits()))}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up %s: %w", Bridge, err)
	}
	return nil
}

// CreateNode creates one node's namespace, its underlay veth and its routes:
// inside the node, routes to every other node's pod CIDR; in the root
// namespace, a route to this node's pod CIDR. Idempotent.
func CreateNode(n NodeSpec, all []NodeSpec) error {
	path, err := ensureNetns(n.Netns)
	if err != nil {
		return err
	}
	h, ns, err := handleAt(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()

	if _, err := h.LinkByName("eth0"); err != nil {
		if err := moveVethIn(n.RootVeth, n.NodeVeth, int(ns)); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		l, err := h.LinkByName(n.NodeVeth)
		if err != nil {
			return fmt.Errorf("node %s: find %s: %w", n.Name, n.NodeVeth, err)
		}
		if err := h.LinkSetName(l, "eth0"); err != nil {
			return fmt.Errorf("node %s: rename to eth0: %w", n.Name, err)
		}
	}
	br, err := netlink.LinkByName(Bridge)
	if err != nil {
		return fmt.Errorf("node %s: find bridge: %w (run CreateUnderlay first)", n.Name, err)
	}
	rv, err := netlink.LinkByName(n.RootVeth)
	if err != nil {
		return fmt.Errorf("node %s: find %s: %w", n.Name, n.RootVeth, err)
	}
	if err := netlink.LinkSetMaster(rv, br); err != nil {
		return fmt.Errorf("node %s: attach %s to %s: %w", n.Name, n.RootVeth, Bridge, err)
	}
	if err := netlink.LinkSetUp(rv); err != nil {
		return fmt.Errorf("node %s: up %s: %w", n.Name, n.RootVeth, err)
	}
	if err := setSysctls(path, map[string]string{
		"net/ipv4/ip_forward":                "1",
		"net/ipv4/conf/all/rp_filter":        "0",
		"net/ipv4/conf/default/rp_filter":    "0",
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node %s: find lo: %w", n.Name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("node %s: up lo: %w", n.Name, err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("node %s: find eth0: %w", n.Name, err)
	}
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.IP, UnderlayPrefix.Bits()))}); err != nil {
		return fmt.Errorf("node %s: address eth0: %w", n.Name, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("node %s: up eth0: %w", n.Name, err)
	}
	for _, o := range all {
		if o.Name == n.Name {
			continue
		}
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(o.PodCIDR), Gw: net.IP(o.IP.AsSlice())}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("node %s: route %s via %s: %w", n.Name, o.PodCIDR, o.IP, err)
		}
	}
	// ClusterIPs: the node's own processes (hostNetwork pods, kube-proxy
	// health checks) need a route for kube-proxy's OUTPUT DNAT to apply; it
	// points at the root namespace, which does not forward, so a ClusterIP
	// that nothing DNATs goes nowhere.
	svc := &netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(ServiceCIDR), Gw: net.IP(RootAddr.AsSlice())}
	if err := h.RouteReplace(svc); err != nil {
		return fmt.Errorf("node %s: service route %s: %w", n.Name, ServiceCIDR, err)
	}
	// The root namespace reaches this node's pods through the node (for pods/proxy).
	r := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: ipNet(n.PodCIDR), Gw: net.IP(n.IP.AsSlice())}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("root route %s via %s: %w", n.PodCIDR, n.IP, err)
	}
	return nil
}

// DeleteNode removes a node's namespace (which deletes its veths and pods'
// host ends with it) and its root route. Idempotent.
func DeleteNode(n NodeSpec) error {
	_ = netlink.RouteDel(&netlink.Route{Dst: ipNet(n.PodCIDR)})
	if l, err := netlink.LinkByName(n.RootVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	return deleteNetns(n.Netns)
}

// moveVethIn creates a veth pair in the current (root or node) namespace and
// moves the peer into the namespace with fd nsFD.
func moveVethIn(local, peer string, nsFD int) error {
	if l, err := netlink.LinkByName(local); err == nil {
		_ = netlink.LinkDel(l) // a stale half from a crashed run
	}
	la := netlink.NewLinkAttrs()
	la.Name = local
	v := &netlink.Veth{LinkAttrs: la, PeerName: peer}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", local, peer, err)
	}
	p, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("find veth peer %s: %w", peer, err)
	}
	if err := netlink.LinkSetNsFd(p, nsFD); err != nil {
		return fmt.Errorf("move %s into namespace: %w", peer, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
