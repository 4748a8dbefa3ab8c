package netsetup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// Pod is a pod's network sandbox.
type Pod struct {
	IP            netip.Addr
	NetnsPath     string
	HostVeth      string // the node-side end of the pod's veth
	HostVethIndex int
}

// PodNetwork creates and removes pod sandboxes on one node. Addresses are
// allocated from the node's pod CIDR and persisted in a file so a restarted
// agent keeps them. It is safe for concurrent use.
type PodNetwork struct {
	node      NodeSpec
	statePath string

	mu    sync.Mutex
	alloc map[string]int // pod key → address index
}

// NewPodNetwork returns the pod network of node n, persisting allocations under stateDir.
func NewPodNetwork(n NodeSpec, stateDir string) (*PodNetwork, error) {
	pn := &PodNetwork{node: n, statePath: filepath.Join(stateDir, "ipam-"+n.Name+".json"), alloc: map[string]int{}}
	b, err := os.ReadFile(pn.statePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read IPAM state: %w", err)
	default:
		if err := json.Unmarshal(b, &pn.alloc); err != nil {
			return nil, fmt.Errorf("parse IPAM state %s: %w (delete it to start over)", pn.statePath, err)
		}
	}
	return pn, nil
}

// podNetnsName is the named namespace of a pod.
func (pn *PodNetwork) podNetnsName(key string) string {
	return pn.node.Netns + "-" + strings.TrimPrefix(HostVethName(key), Prefix+"p")
}

// allocate returns the address index for key, allocating the lowest free one.
func (pn *PodNetwork) allocate(key string) (int, error) {
	if i, ok := pn.alloc[key]; ok {
		return i, nil
	}
	used := make([]int, 0, len(pn.alloc))
	for _, i := range pn.alloc {
		used = append(used, i)
	}
	i := lowestFree(used)
	if _, err := PodAddr(pn.node.PodCIDR, i); err != nil {
		return 0, err
	}
	pn.alloc[key] = i
	return i, pn.save()
}

// lowestFree returns the smallest positive integer not in used.
func lowestFree(used []int) int {
	sort.Ints(used)
	n := 1
	for _, u := range used {
		if u == n {
			n++
		} else if u > n {
			break
		}
	}
	return n
}

func (pn *PodNetwork) save() error {
	b, err := json.Marshal(pn.alloc)
	if err != nil {
		return err
	}
	tmp := pn.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write IPAM state: %w", err)
	}
	return os.Rename(tmp, pn.statePath)
}

// SetupPod creates (or finds) the sandbox of pod key. Idempotent.
func (pn *PodNetwork) SetupPod(_ context.Context, key string) (Pod, error) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	idx, err := pn.allocate(key)
	if err != nil {
		return Pod{}, err
	}
	ip, _ := PodAddr(pn.node.PodCIDR, idx)
	name := pn.podNetnsName(key)
	podPath, err := ensureNetns(name)
	if err != nil {
		return Pod{}, err
	}
	nh, nns, err := handleAt(pn.node.NetnsPath)
	if err != nil {
		return Pod{}, err
	}
	defer nns.Close()
	defer nh.Close()
	ph, pns, err := handleAt(podPath)
	if err != nil {
		return Pod{}, err
	}
	defer pns.Close()
	defer ph.Close()

	hostName := HostVethName(key)
	if _, err := ph.LinkByName("eth0"); err != nil {
		if l, err := nh.LinkByName(hostName); err == nil {
			_ = nh.LinkDel(l) // half-made sandbox from an earlier try
		}
		peer := Prefix + "c" + strings.TrimPrefix(hostName, Prefix+"p")
		la := netlink.NewLinkAttrs()
		la.Name = hostName
		if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
			return Pod{}, fmt.Errorf("pod %s: create veth: %w", key, err)
		}
		p, err := nh.LinkByName(peer)
		if err != nil {
			return Pod{}, fmt.Errorf("pod %s: find veth peer: %w", key, err)
		}
		if err := nh.LinkSetNsFd(p, int(pns)); err != nil {
			return Pod{}, fmt.Errorf("pod %s: move veth into pod: %w", key, err)
		}
		pl, err := ph.LinkByName(peer)
		if err != nil {
			return Pod{}, fmt.Errorf("pod %s: find moved veth: %w", key, err)
		}
		if err := ph.LinkSetName(pl, "eth0"); err != nil {
			return Pod{}, fmt.Errorf("pod %s: rename eth0: %w", key, err)
		}
	}
	// Pod side: the /32, a link-local gateway and the default route through it.
	eth, err := ph.LinkByName("eth0")
	if err != nil {
		return Pod{}, fmt.Errorf("pod %s: find eth0: %w", key, err)
	}
	if err := ph.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ip, 32))}); err != nil {
		return Pod{}, fmt.Errorf("pod %s: address: %w", key, err)
	}
	for _, l := range []netlink.Link{eth} {
		if err := ph.LinkSetUp(l); err != nil {
			return Pod{}, fmt.Errorf("pod %s: up eth0: %w", key, err)
		}
	}
	if lo, err := ph.LinkByName("lo"); err == nil {
		if err := ph.LinkSetUp(lo); err != nil {
			return Pod{}, fmt.Errorf("pod %s: up lo: %w", key, err)
		}
	}
	gw := net.IP(PodGateway.AsSlice())
	if err := ph.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(netip.PrefixFrom(PodGateway, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return Pod{}, fmt.Errorf("pod %s: gateway route: %w", key, err)
	}
	if err := ph.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return Pod{}, fmt.Errorf("pod %s: default route: %w", key, err)
	}
	// Node side: the pod reaches its gateway through a permanent neighbour
	// entry for the host veth's MAC (the node has no route to the link-local
	// gateway, so proxy ARP would not answer); the /32 routes to the pod.
	hv, err := nh.LinkByName(hostName)
	if err != nil {
		return Pod{}, fmt.Errorf("pod %s: find host veth: %w", key, err)
	}
	if err := ph.NeighSet(&netlink.Neigh{LinkIndex: eth.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hv.Attrs().HardwareAddr}); err != nil {
		return Pod{}, fmt.Errorf("pod %s: gateway neighbour: %w", key, err)
	}
	if err := setSysctls(pn.node.NetnsPath, map[string]string{
		"net/ipv4/conf/" + hostName + "/rp_filter": "0",
	}); err != nil {
		return Pod{}, err
	}
	if err := nh.LinkSetUp(hv); err != nil {
		return Pod{}, fmt.Errorf("pod %s: up host veth: %w", key, err)
	}
	if err := nh.RouteReplace(&netlink.Route{LinkIndex: hv.Attrs().Index, Dst: ipNet(netip.PrefixFrom(ip, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return Pod{}, fmt.Errorf("pod %s: host route: %w", key, err)
	}
	return Pod{IP: ip, NetnsPath: podPath, HostVeth: hostName, HostVethIndex: hv.Attrs().Index}, nil
}

// TeardownPod removes the sandbox of pod key and frees its address. Idempotent.
func (pn *PodNetwork) TeardownPod(_ context.Context, key string) error {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	// Deleting the namespace deletes the veth pair and with it the host route.
	if err := deleteNetns(pn.podNetnsName(key)); err != nil {
		return err
	}
	if _, ok := pn.alloc[key]; ok {
		delete(pn.alloc, key)
		return pn.save()
	}
	return nil
}
