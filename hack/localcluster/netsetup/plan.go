package netsetup

import (
	"fmt"
	"net/netip"
)

// Names and addresses of the underlay.
const (
	// Prefix starts the name of every namespace and link this package makes.
	Prefix = "amb"
	// Bridge is the underlay bridge in the root namespace.
	Bridge = "amb0"
	// MaxNodes bounds the node count (one /24 of pod CIDR and one underlay address each).
	MaxNodes = 200
	// PodGateway is the link-local next hop every pod routes through; the
	// node's host-side veth answers ARP for it (proxy ARP).
	PodGatewayAddr = "169.254.1.1"
)

var (
	// UnderlayPrefix is the node network.
	UnderlayPrefix = netip.MustParsePrefix("172.30.0.0/24")
	// RootAddr is the root namespace's address on the underlay (the API server listens here).
	RootAddr = netip.MustParseAddr("172.30.0.1")
	// ClusterCIDR contains every pod CIDR.
	ClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// ServiceCIDR is the ClusterIP range.
	ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	// PodGateway is PodGatewayAddr parsed.
	PodGateway = netip.MustParseAddr(PodGatewayAddr)
)

// NodeSpec is the planned network identity of one node.
type NodeSpec struct {
	Name      string
	Index     int          // 1-based
	IP        netip.Addr   // underlay address
	PodCIDR   netip.Prefix // this node's pods
	Netns     string       // named network namespace (under /run/netns)
	RootVeth  string       // root-side end of the node's underlay veth, enslaved to Bridge
	NodeVeth  string       // node-side end, renamed eth0 inside the node
	NetnsPath string
}

// Plan returns the network plan for n nodes named node1..nodeN. It is pure.
func Plan(n int) ([]NodeSpec, error) {
	if n < 1 || n > MaxNodes {
		return nil, fmt.Errorf("node count %d out of range 1..%d", n, MaxNodes)
	}
	nodes := make([]NodeSpec, 0, n)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("node%d", i)
		ip4 := UnderlayPrefix.Addr().As4()
		ip4[3] = byte(10 + i)
		pod := ClusterCIDR.Addr().As4()
		pod[2] = byte(i)
		ns := Prefix + "-" + name
		nodes = append(nodes, NodeSpec{
			Name:      name,
			Index:     i,
			IP:        netip.AddrFrom4(ip4),
			PodCIDR:   netip.PrefixFrom(netip.AddrFrom4(pod), 24),
			Netns:     ns,
			NetnsPath: "/run/netns/" + ns,
			RootVeth:  fmt.Sprintf("%sn%d", Prefix, i),
			NodeVeth:  fmt.Sprintf("%sn%dx", Prefix, i),
		})
	}
	return nodes, nil
}

// PodAddr returns the nth (1-based) pod address of a node's CIDR; .1 is never
// used so that .1 stays free, as many CNIs keep it for the gateway.
func PodAddr(cidr netip.Prefix, n int) (netip.Addr, error) {
	if n < 1 || n > 252 {
		return netip.Addr{}, fmt.Errorf("pod address index %d out of range 1..252 (node %s is full)", n, cidr)
	}
	a := cidr.Addr().As4()
	a[3] = byte(1 + n)
	return netip.AddrFrom4(a), nil
}

// HostVethName is the node-side veth name for a pod key: "amb" + 8 hex chars of
// a hash (interface names are limited to 15 bytes).
func HostVethName(key string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return fmt.Sprintf("%sp%08x", Prefix, h)
}

func addrOf(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
