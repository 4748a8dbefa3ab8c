//go:build linux

package capture

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test node: pods behind routed veths with /32 routes, like a typical CNI
// (Calico/Cilium style, no bridge). Every pod's default gateway is the
// link-local address on the host side of its veth.
// Pods are dual-stack: 10.77.x.y and fd77::x:y.
var (
	nodeIP  = netip.MustParseAddr("10.77.0.1")
	nodeIP6 = netip.MustParseAddr("fd77::1")
	podGW   = netip.MustParseAddr("169.254.1.1")
	podGW6  = netip.MustParseAddr("fe80::1")
)

type node struct {
	ns   netns.NsHandle
	pods map[string]*pod
}

type pod struct {
	name    string
	ip, ip6 netip.Addr
	ns      netns.NsHandle
	ifindex int // host-side veth, in the node netns
}

// addr is the pod's address of one family.
func (p *pod) addr(v6 bool) netip.Addr {
	if v6 {
		return p.ip6
	}
	return p.ip
}

// ipv6Of maps 10.77.x.y to fd77::x:y.
func ipv6Of(ip netip.Addr) netip.Addr {
	b := ip.As4()
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x77, 13: b[2], 15: b[3]})
}

// noDAD turns off duplicate address detection in the calling thread's netns
// for interfaces created from now on: addresses are usable at once.
func noDAD(t testing.TB) {
	writeSysctl(t, "net/ipv6/conf/all/accept_dad", "0")
	writeSysctl(t, "net/ipv6/conf/default/accept_dad", "0")
}

// newNode builds the node netns and one netns per pod (IPv4 addresses given,
// IPv6 ones derived with ipv6Of), all removed on cleanup.
func newNode(t testing.TB, pods map[string]netip.Addr) *node {
	t.Helper()
	n := &node{ns: newNetns(t), pods: map[string]*pod{}}
	hn, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(hn.Close)
	lo, err := hn.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	must(t, hn.AddrAdd(lo, podAddr(nodeIP)))
	must(t, hn.AddrAdd(lo, podAddr(nodeIP6)))
	inNetns(t, n.ns, func() {
		writeSysctl(t, "net/ipv4/ip_forward", "1")
		writeSysctl(t, "net/ipv6/conf/all/forwarding", "1")
		noDAD(t)
	})
	for name, ip := range pods {
		p := &pod{name: name, ip: ip, ip6: ipv6Of(ip), ns: newNetns(t)}
		inNetns(t, p.ns, func() { noDAD(t) })
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "v" + name},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(p.ns)),
		}
		if err := hn.LinkAdd(veth); err != nil {
			t.Fatalf("veth for %s: %v", name, err)
		}
		host, err := hn.LinkByName("v" + name)
		if err != nil {
			t.Fatal(err)
		}
		p.ifindex = host.Attrs().Index
		must(t, hn.LinkSetUp(host))
		must(t, hn.AddrAdd(host, podAddr(podGW)))
		must(t, hn.AddrAdd(host, &netlink.Addr{IPNet: &net.IPNet{IP: podGW6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}))
		must(t, hn.RouteAdd(&netlink.Route{LinkIndex: p.ifindex, Dst: ipNet(ip), Scope: netlink.SCOPE_LINK, Src: nodeIP.AsSlice()}))
		must(t, hn.RouteAdd(&netlink.Route{LinkIndex: p.ifindex, Dst: ipNet(p.ip6), Src: nodeIP6.AsSlice()}))

		hp, err := netlink.NewHandleAt(p.ns)
		if err != nil {
			t.Fatal(err)
		}
		eth0, err := hp.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		must(t, hp.AddrAdd(eth0, podAddr(ip)))
		must(t, hp.AddrAdd(eth0, podAddr(p.ip6)))
		must(t, hp.LinkSetUp(eth0))
		must(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(podGW), Scope: netlink.SCOPE_LINK}))
		must(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: podGW.AsSlice(), Src: ip.AsSlice()}))
		must(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: podGW6.AsSlice(), Src: p.ip6.AsSlice()}))
		waitLocal(t, hp, p.ip6, 0)
		hp.Close()
		waitLocal(t, hn, podGW6, p.ifindex)
		n.pods[name] = p
	}
	waitLocal(t, hn, nodeIP6, 0)
	n.warmUp(t)
	return n
}

// warmUp connects from every pod to the node over both families before any
// program is attached, so that neighbour discovery (ARP, IPv6 ND) is done in
// both directions and the tests' first packets are not held up by it.
func (n *node) warmUp(t testing.TB) {
	t.Helper()
	var ln net.Listener
	inNetns(t, n.ns, func() {
		var err error
		ln, err = net.Listen("tcp", "[::]:9")
		must(t, err)
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, p := range n.pods {
		for _, dst := range []netip.Addr{nodeIP, nodeIP6} {
			c, err := p.dialer(t)(net.Dialer{Timeout: 10 * time.Second}, netip.AddrPortFrom(dst, 9))
			if err != nil {
				t.Fatalf("warm-up %s -> %v: %v", p.name, dst, err)
			}
			c.Close()
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listen opens a TCP listener in the pod's netns.
func (p *pod) listen(t testing.TB, port uint16) net.Listener {
	t.Helper()
	var ln net.Listener
	inNetns(t, p.ns, func() {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), port).String()) // both families
		if err != nil {
			t.Fatalf("listen in %s: %v", p.name, err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialer returns a dialer whose sockets are created in the pod's netns.
func (p *pod) dialer(t testing.TB) func(net.Dialer, netip.AddrPort) (net.Conn, error) {
	return func(d net.Dialer, dst netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		var err error
		// The socket is created (and connect started) on the locked thread in
		// p.ns; the rest of the dial does not depend on the thread's netns.
		inNetns(t, p.ns, func() { c, err = d.Dial("tcp", dst.String()) })
		return c, err
	}
}
