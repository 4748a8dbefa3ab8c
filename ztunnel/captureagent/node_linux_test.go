//go:build linux

package captureagent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

func TestNotrackScript(t *testing.T) {
	s := Notrack{}.Script()
	for _, want := range []string{
		"table inet ambient_capture {",
		"type filter hook prerouting priority raw; policy accept;",
		"meta mark & 0x400 == 0x400 notrack",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	// Replace in one transaction: declare, delete, recreate.
	if !strings.HasPrefix(s, "table inet ambient_capture\ndelete table inet ambient_capture\n") {
		t.Errorf("script does not replace the table atomically:\n%s", s)
	}
	if got := (Notrack{Table: "x"}).RemoveScript(); got != "table inet x\ndelete table inet x\n" {
		t.Errorf("RemoveScript = %q", got)
	}
}

func requireNFT(t testing.TB) {
	t.Helper()
	if !haveNFT() {
		t.Skip("nft not installed (nftables package)")
	}
}

func haveNFT() bool {
	_, err := exec.LookPath("nft")
	return err == nil
}

// inNetnsErr runs fn in ns and returns fn's error.
func inNetnsErr(t testing.TB, ns netns.NsHandle, fn func() error) error {
	t.Helper()
	var err error
	must(t, inNetns(ns, func() { err = fn() }))
	return err
}

// TestNotrackInNetns: Ensure installs the rule and is idempotent; Remove
// deletes the table and is idempotent.
func TestNotrackInNetns(t *testing.T) {
	requireRoot(t)
	requireNFT(t)
	ns := newNetns(t)
	ctx := context.Background()
	n := Notrack{}
	for range 2 {
		must(t, inNetnsErr(t, ns, func() error { return n.Ensure(ctx) }))
	}
	out, err := nft(t, ns, "list", "table", "inet", DefaultNotrackTable)
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	if strings.Count(out, "notrack") != 1 || !strings.Contains(out, "meta mark & 0x00000400 == 0x00000400 notrack") {
		t.Errorf("table after two Ensure:\n%s", out)
	}
	for range 2 {
		must(t, inNetnsErr(t, ns, func() error { return n.Remove(ctx) }))
	}
	if out, err := nft(t, ns, "list", "tables"); err != nil || strings.Contains(out, DefaultNotrackTable) {
		t.Errorf("tables after Remove: %q, %v", out, err)
	}
}

// TestResolvers: pod veths from /32 routes; the uplink from the node IP.
func TestResolvers(t *testing.T) {
	requireRoot(t)
	podIP := netip.MustParseAddr("10.77.1.2")
	n := newTestNode(t, map[string]netip.Addr{"a": podIP})
	veths := RouteVeths{Handle: n.h}
	if got, err := veths.HostVeth(podIP); err != nil || got != n.pods["a"].ifindex {
		t.Errorf("HostVeth(%v) = %d, %v; want %d", podIP, got, err, n.pods["a"].ifindex)
	}
	// Another node's pod CIDR, via a gateway: not a pod interface.
	must(t, n.h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 88, 0, 0), Mask: net.CIDRMask(16, 32)},
		Gw: netip.MustParseAddr("10.77.0.254").AsSlice(), LinkIndex: n.uplink}))
	if _, err := veths.HostVeth(netip.MustParseAddr("10.88.1.2")); !errors.Is(err, ErrNoVeth) {
		t.Errorf("HostVeth(routed via a gateway) error = %v, want ErrNoVeth", err)
	}
	// The node's own address: a local route.
	if _, err := veths.HostVeth(nodeIP); !errors.Is(err, ErrNoVeth) {
		t.Errorf("HostVeth(node IP) error = %v, want ErrNoVeth", err)
	}
	if _, err := veths.HostVeth(netip.MustParseAddr("10.99.0.1")); err == nil {
		t.Errorf("HostVeth(unroutable) succeeded")
	}

	if got, err := (NodeUplink{NodeIP: nodeIP, Handle: n.h}).Uplink(); err != nil || got != n.uplink {
		t.Errorf("Uplink(node IP) = %d, %v; want %d", got, err, n.uplink)
	}
	if _, err := (NodeUplink{NodeIP: netip.MustParseAddr("10.5.5.5"), Handle: n.h}).Uplink(); err == nil {
		t.Errorf("Uplink(foreign IP) succeeded")
	}
	if _, err := (NodeUplink{NodeIP: netip.MustParseAddr("127.0.0.1"), Handle: n.h}).Uplink(); err == nil {
		t.Errorf("Uplink(loopback IP) succeeded")
	}
	if _, err := (NodeUplink{Handle: n.h}).Uplink(); err == nil {
		t.Errorf("Uplink without node IP or default route succeeded")
	}
	must(t, n.h.RouteAdd(&netlink.Route{LinkIndex: n.uplink, Gw: netip.MustParseAddr("10.77.0.254").AsSlice()}))
	if got, err := (NodeUplink{Handle: n.h}).Uplink(); err != nil || got != n.uplink {
		t.Errorf("Uplink(default route) = %d, %v; want %d", got, err, n.uplink)
	}
}

// TestSetupAndUninstall: node setup is idempotent, and Uninstall removes the
// links, pins, routing rules and nftables table (twice: absent is fine).
func TestSetupAndUninstall(t *testing.T) {
	requireRoot(t)
	requireNFT(t)
	n := newTestNode(t, nil)
	cfg := Config{BPFFS: mountBPFFS(t)}
	objs := loadObjects(t, cfg)
	setup := nodeSetup{notrack: &Notrack{}}
	ctx := context.Background()
	for range 2 {
		must(t, inNetnsErr(t, n.ns, func() error { return setup.Ensure(ctx) }))
	}
	must(t, inNetnsErr(t, n.ns, func() error { return objs.Attach(n.uplink) }))
	rules := func() int {
		rs, err := n.h.RuleList(netlink.FAMILY_V4)
		must(t, err)
		c := 0
		for _, r := range rs {
			if r.Mark == capture.CaptureMark {
				c++
			}
		}
		return c
	}
	if got := rules(); got != 1 {
		t.Fatalf("fwmark rules after setup = %d, want 1", got)
	}
	if out, err := nft(t, n.ns, "list", "table", "inet", DefaultNotrackTable); err != nil {
		t.Fatalf("notrack table missing after setup: %v: %s", err, out)
	}

	for range 2 {
		must(t, inNetnsErr(t, n.ns, func() error { return Uninstall(ctx, cfg, nil) }))
	}
	if got := rules(); got != 0 {
		t.Errorf("fwmark rules after Uninstall = %d, want 0", got)
	}
	if out, _ := nft(t, n.ns, "list", "tables"); strings.Contains(out, DefaultNotrackTable) {
		t.Errorf("notrack table still there after Uninstall: %s", out)
	}
	if _, err := os.Stat(cfg.PinDir()); !os.IsNotExist(err) {
		t.Errorf("pin dir after Uninstall: %v, want gone", err)
	}
}
