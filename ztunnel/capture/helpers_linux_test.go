//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
}

// skipIfNotSupported skips when err says the kernel lacks a feature.
func skipIfNotSupported(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("kernel lacks a feature: %v", err)
	}
}

// mountBPFFS mounts a fresh bpffs on a temporary directory, unmounted on cleanup.
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

// loadForTest loads the program pinned in a fresh bpffs; everything is removed
// on cleanup.
func loadForTest(t testing.TB) *Objects {
	t.Helper()
	requireRoot(t)
	pinDir := filepath.Join(mountBPFFS(t), "capture")
	o, err := Load(Options{PinDir: pinDir})
	skipIfNotSupported(t, err)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := Uninstall(pinDir); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
		o.Close()
	})
	return o
}

// newNetns creates an anonymous network namespace, closed on cleanup (which
// destroys it and its interfaces once no socket uses it any more).
func newNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with the goroutine.
		t.Fatalf("restore netns: %v", err)
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	inNetns(t, ns, func() {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Fatalf("set lo up: %v", err)
		}
	})
	return ns
}

// inNetns runs fn on a thread switched to ns. Sockets created by fn stay in ns.
func inNetns(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := inNetnsErr(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// inNetnsErr is inNetns for goroutines other than the test's.
func inNetnsErr(ns netns.NsHandle, fn func()) (err error) {
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
			// The thread stays locked and dies with the goroutine.
			err = fmt.Errorf("restore netns: %w", rerr)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return nil
}

// writeSysctl writes a sysctl of the calling thread's network namespace.
func writeSysctl(t testing.TB, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644); err != nil {
		t.Fatalf("sysctl %s=%s: %v", name, value, err)
	}
}

func ipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// addLoAddr adds a host address to lo in the calling thread's network
// namespace and waits until it is usable.
func addLoAddr(t testing.TB, a netip.Addr) {
	t.Helper()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	must(t, err)
	defer h.Close()
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.AddrAdd(lo, podAddr(a)))
	waitLocal(t, h, a, 0)
}

// waitLocal waits until addr (on interface oif, for a link-local address) is
// a usable local address of h's netns: IPv6 addresses get their local route
// from a kernel work queue, even without duplicate address detection.
func waitLocal(t testing.TB, h *netlink.Handle, addr netip.Addr, oif int) {
	t.Helper()
	waitFor(t, "address "+addr.String()+" to be usable", func() bool {
		rs, err := h.RouteGetWithOptions(addr.AsSlice(), &netlink.RouteGetOptions{OifIndex: oif})
		return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
	})
}

// podAddr is a host address; IPv6 ones skip duplicate address detection, which
// would keep them unusable ("tentative") for a second.
func podAddr(a netip.Addr) *netlink.Addr {
	addr := &netlink.Addr{IPNet: ipNet(a)}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}
