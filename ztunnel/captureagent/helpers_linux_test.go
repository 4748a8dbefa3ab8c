//go:build linux

package captureagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

// The netns tests follow ztunnel/capture's: a node netns, one netns per pod
// behind a routed veth (/32 route, link-local gateway), a private bpffs. The
// node's uplink is a veth "eth0" holding the node IP, like the local
// cluster's nodes.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mountBPFFS mounts a fresh bpffs on a temporary directory.
func mountBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Skipf("cannot mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}

// loadObjects loads the capture program pinned under bpffs/capture; objects
// are closed on cleanup (the test removes the pins itself).
func loadObjects(t testing.TB, cfg Config) *capture.Objects {
	t.Helper()
	o, err := capture.Load(capture.Options{PinDir: cfg.PinDir()})
	if errors.Is(err, capture.ErrNotSupported) {
		t.Skipf("kernel lacks a feature: %v", err)
	}
	must(t, err)
	t.Cleanup(func() { o.Close() })
	return o
}

// newNetns creates an anonymous network namespace with lo up.
func newNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := func() error {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return err
		}
		defer orig.Close()
		if ns, err = netns.New(); err != nil {
			runtime.UnlockOSThread()
			return err
		}
		if err := netns.Set(orig); err != nil {
			return err // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		return nil
	}()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h := handleAt(t, ns)
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	return ns
}

func handleAt(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	must(t, err)
	t.Cleanup(h.Close)
	return h
}

// inNetns runs fn on a thread switched to ns; sockets and child processes
// created by fn belong to ns.
func inNetns(ns netns.NsHandle, fn func()) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = fmt.Errorf("restore netns: %w", rerr) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return nil
}

func writeSysctl(t testing.TB, ns netns.NsHandle, name, value string) {
	t.Helper()
	var err error
	must(t, inNetns(ns, func() { err = os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644) }))
	must(t, err)
}

func host(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

var (
	nodeIP = netip.MustParseAddr("10.77.0.1")
	podGW  = netip.MustParseAddr("169.254.1.1")
)

type testNodeNet struct {
	ns     netns.NsHandle
	h      *netlink.Handle
	uplink int // ifindex of eth0
	pods   map[string]*testPod
}

type testPod struct {
	name    string
	ip      netip.Addr
	ns      netns.NsHandle
	ifindex int // host-side veth in the node netns
}

// newTestNode builds the node netns, its uplink and one routed pod per
// entry of pods (IPv4).
func newTestNode(t testing.TB, pods map[string]netip.Addr) *testNodeNet {
	t.Helper()
	n := &testNodeNet{ns: newNetns(t), pods: map[string]*testPod{}}
	n.h = handleAt(t, n.ns)
	writeSysctl(t, n.ns, "net/ipv4/ip_forward", "1")
	// The uplink: a veth to a "wire" netns (this kernel has no dummy driver).
	wire := newNetns(t)
	must(t, n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "wire0", PeerNamespace: netlink.NsFd(int(wire))}))
	eth0, err := n.h.LinkByName("eth0")
	must(t, err)
	n.uplink = eth0.Attrs().Index
	must(t, n.h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: nodeIP.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	must(t, n.h.LinkSetUp(eth0))
	for name, ip := range pods {
		p := &testPod{name: name, ip: ip, ns: newNetns(t)}
		must(t, n.h.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "v" + name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(p.ns)),
		}))
		hv, err := n.h.LinkByName("v" + name)
		must(t, err)
		p.ifindex = hv.Attrs().Index
		must(t, n.h.LinkSetUp(hv))
		must(t, n.h.AddrAdd(hv, &netlink.Addr{IPNet: host(podGW)}))
		must(t, n.h.RouteAdd(&netlink.Route{LinkIndex: p.ifindex, Dst: host(ip), Scope: netlink.SCOPE_LINK, Src: nodeIP.AsSlice()}))

		hp := handleAt(t, p.ns)
		pe, err := hp.LinkByName("eth0")
		must(t, err)
		must(t, hp.AddrAdd(pe, &netlink.Addr{IPNet: host(ip)}))
		must(t, hp.LinkSetUp(pe))
		must(t, hp.RouteAdd(&netlink.Route{LinkIndex: pe.Attrs().Index, Dst: host(podGW), Scope: netlink.SCOPE_LINK}))
		must(t, hp.RouteAdd(&netlink.Route{LinkIndex: pe.Attrs().Index, Gw: podGW.AsSlice(), Src: ip.AsSlice()}))
		n.pods[name] = p
	}
	return n
}

// serve answers every connection on ln with name.
func serve(ln net.Listener, name string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
}

// listenIn opens a TCP listener in ns, closed on cleanup.
func listenIn(t testing.TB, ns netns.NsHandle, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	must(t, inNetns(ns, func() { ln, err = net.Listen("tcp4", addr) }))
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// exchange connects from pod p to dst and returns the first line answered.
func exchange(t testing.TB, p *testPod, dst netip.AddrPort) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	d := net.Dialer{Timeout: 5 * time.Second}
	must(t, inNetns(p.ns, func() { c, err = d.DialContext(context.Background(), "tcp4", dst.String()) }))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func mustExchange(t testing.TB, p *testPod, dst netip.AddrPort, want string) {
	t.Helper()
	got, err := exchange(t, p, dst)
	if err != nil {
		t.Fatalf("%s -> %v: %v", p.name, dst, err)
	}
	if got != want {
		t.Fatalf("%s -> %v answered by %q, want %q", p.name, dst, got, want)
	}
}

// nft runs nft with args in ns and returns its output.
func nft(t testing.TB, ns netns.NsHandle, args ...string) (string, error) {
	t.Helper()
	var out []byte
	var err error
	must(t, inNetns(ns, func() { out, err = exec.Command("nft", args...).CombinedOutput() }))
	return string(out), err
}
