//go:build linux

package capture

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestListenerKind(t *testing.T) {
	tests := []struct {
		kind ListenerKind
		name string
		port int
	}{
		{Outbound, "outbound", 15001},
		{InboundPlain, "inbound-plaintext", 15006},
		{HBONE, "hbone", 15008},
		{ListenerKind(3), "ListenerKind(3)", 0},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.name {
			t.Errorf("String(%d) = %q, want %q", uint32(tt.kind), got, tt.name)
		}
		if got := tt.kind.Port(); got != tt.port {
			t.Errorf("Port(%s) = %d, want %d", tt.kind, got, tt.port)
		}
		if got, want := tt.kind.valid(), tt.port != 0; got != want {
			t.Errorf("valid(%s) = %v, want %v", tt.kind, got, want)
		}
	}
}

func TestPodKey(t *testing.T) {
	v4mapped := [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: 0, 14: 1, 15: 2}
	tests := []struct {
		addr string
		want [16]byte
		err  error
	}{
		{"10.0.1.2", v4mapped, nil},
		{"::ffff:10.0.1.2", v4mapped, nil},
		{"fd00::1", [16]byte{0: 0xfd, 15: 1}, nil},
		{"fe80::1%eth0", [16]byte{}, ErrInvalidAddress},
	}
	for _, tt := range tests {
		got, err := podKey(netip.MustParseAddr(tt.addr))
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("podKey(%s) = %v, %v; want %v, %v", tt.addr, got, err, tt.want, tt.err)
		}
	}
	if _, err := podKey(netip.Addr{}); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("podKey(zero) err = %v, want ErrInvalidAddress", err)
	}
}

func TestNodeRoutingSpec(t *testing.T) {
	tests := []struct {
		name            string
		r               NodeRouting
		family          int
		table, priority int
		dst             string
	}{
		{"defaults v4", NodeRouting{}, netlink.FAMILY_V4, 100, 32000, "0.0.0.0/0"},
		{"defaults v6", NodeRouting{}, netlink.FAMILY_V6, 100, 32000, "::/0"},
		{"custom", NodeRouting{Table: 7, Priority: 9}, netlink.FAMILY_V4, 7, 9, "0.0.0.0/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := tt.r.rule(tt.family)
			if rule.Table != tt.table || rule.Priority != tt.priority || rule.Mark != 0x400 || rule.Mask == nil || *rule.Mask != 0x400 || rule.Family != tt.family {
				t.Errorf("rule = %+v, want fwmark 0x400/0x400 lookup %d priority %d", rule, tt.table, tt.priority)
			}
			route := tt.r.route(tt.family, 1)
			if route.Table != tt.table || route.Type != unix.RTN_LOCAL || route.Dst.String() != tt.dst || route.LinkIndex != 1 || route.Scope != netlink.SCOPE_HOST || route.Family != tt.family {
				t.Errorf("route = %+v, want local %s dev lo table %d", route, tt.dst, tt.table)
			}
			if !sameRule(rule, tt.r.rule(tt.family)) {
				t.Error("sameRule(rule, rule) = false")
			}
			other := NodeRouting{Table: tt.table + 1, Priority: tt.priority}.rule(tt.family)
			if sameRule(other, rule) {
				t.Error("sameRule of different tables = true")
			}
		})
	}
}

// TestNodeRoutingEnsureRemove: Ensure and Remove are idempotent.
func TestNodeRoutingEnsureRemove(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h, err := netlink.NewHandleAt(ns)
	must(t, err)
	defer h.Close()
	r := NodeRouting{Handle: h}
	count := func() (rules, routes int) {
		for _, family := range families {
			rs, err := h.RuleListFiltered(family, r.rule(family), netlink.RT_FILTER_TABLE)
			must(t, err)
			rt, err := h.RouteListFiltered(family, &netlink.Route{Table: DefaultRouteTable}, netlink.RT_FILTER_TABLE)
			must(t, err)
			rules += len(rs)
			routes += len(rt)
		}
		return rules, routes
	}
	for i := range 2 {
		must(t, r.Ensure())
		if rules, routes := count(); rules != 2 || routes != 2 {
			t.Fatalf("after Ensure #%d: %d rules, %d routes in table 100; want 2, 2 (v4 and v6)", i+1, rules, routes)
		}
	}
	for i := range 2 {
		must(t, r.Remove())
		if rules, routes := count(); rules != 0 || routes != 0 {
			t.Fatalf("after Remove #%d: %d rules, %d routes in table 100; want 0, 0", i+1, rules, routes)
		}
	}
}

func TestLoadRequiresBPFFS(t *testing.T) {
	requireRoot(t)
	_, err := Load(Options{PinDir: filepath.Join(t.TempDir(), "capture")})
	if !errors.Is(err, ErrNoBPFFS) {
		t.Fatalf("Load on tmpfs: err = %v, want ErrNoBPFFS", err)
	}
}

// TestReloadAdoptsPinnedState: a restarted agent finds enrolled pods,
// registered listeners and links in place, switches the links to its program
// and drops the pins of links whose interface is gone; Uninstall removes all.
func TestReloadAdoptsPinnedState(t *testing.T) {
	requireRoot(t)
	pinDir := filepath.Join(mountBPFFS(t), "capture")
	t.Cleanup(func() { Uninstall(pinDir) })
	ns := newNetns(t)
	var keep, gone int
	inNetns(t, ns, func() {
		for _, name := range []string{"keep0", "gone0"} {
			must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}))
		}
		l, err := netlink.LinkByName("keep0")
		must(t, err)
		keep = l.Attrs().Index
		l, err = netlink.LinkByName("gone0")
		must(t, err)
		gone = l.Attrs().Index
	})
	pod := netip.MustParseAddr("10.77.1.2")

	o1, err := Load(Options{PinDir: pinDir})
	skipIfNotSupported(t, err)
	must(t, err)
	inNetns(t, ns, func() {
		must(t, o1.AttachPod(keep, pod))
		must(t, o1.Attach(gone))
		must(t, o1.Attach(gone)) // idempotent
	})
	var ln interface{ Close() error }
	inNetns(t, ns, func() {
		l, err := ListenTransparent(context.Background(), "127.0.0.1:0")
		must(t, err)
		ln = l
		must(t, o1.RegisterListener(HBONE, l))
	})
	defer ln.Close()
	prog1, _ := o1.objs.CaptureIngress.Info()
	id1, _ := prog1.ID()
	must(t, o1.Close())

	inNetns(t, ns, func() {
		l, err := netlink.LinkByName("gone0")
		must(t, err)
		must(t, netlink.LinkDel(l))
	})

	o2, err := Load(Options{PinDir: pinDir})
	must(t, err)
	defer o2.Close()
	enrolled, err := o2.Enrolled()
	must(t, err)
	if len(enrolled) != 1 || enrolled[pod] != keep {
		t.Errorf("Enrolled() = %v, want %v on %d", enrolled, pod, keep)
	}
	attached, err := o2.Attached()
	must(t, err)
	if !slices.Equal(attached, []int{keep}) {
		t.Errorf("Attached() = %v, want [%d] (the pin of deleted %d removed)", attached, keep, gone)
	}
	l, err := link.LoadPinnedLink(linkPinPath(pinDir, keep), nil)
	must(t, err)
	info, err := l.Info()
	l.Close()
	must(t, err)
	prog2, _ := o2.objs.CaptureIngress.Info()
	id2, _ := prog2.ID()
	if info.Program != id2 || id2 == id1 {
		t.Errorf("pinned link runs program %d, want the reloaded %d (first load %d)", info.Program, id2, id1)
	}
	l, err = link.LoadPinnedLink(filepath.Join(pinDir, linksDir, lookupPin), nil)
	must(t, err)
	info, err = l.Info()
	l.Close()
	must(t, err)
	lookup2, _ := o2.objs.CaptureLookup.Info()
	lookupID2, _ := lookup2.ID()
	if info.Program != lookupID2 {
		t.Errorf("pinned sk_lookup link runs program %d, want the reloaded %d", info.Program, lookupID2)
	}
	sm, err := Open(pinDir)
	must(t, err)
	defer sm.Close()
	if !sm.Registered(HBONE, false) || sm.Registered(HBONE, true) || sm.Registered(Outbound, false) {
		t.Errorf("after reload: want only the IPv4 HBONE listener registered")
	}
	must(t, sm.Unregister(HBONE))
	must(t, sm.Unregister(HBONE)) // idempotent
	if sm.Registered(HBONE, false) {
		t.Error("HBONE listener still registered after Unregister")
	}

	tcxPrograms := func() int {
		var n int
		inNetns(t, ns, func() {
			res, err := link.QueryPrograms(link.QueryOptions{Target: keep, Attach: ebpf.AttachTCXIngress})
			must(t, err)
			n = len(res.Programs)
		})
		return n
	}
	if n := tcxPrograms(); n != 1 {
		t.Fatalf("%d programs on tcx ingress of %d before Uninstall, want 1", n, keep)
	}
	must(t, Uninstall(pinDir))
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after Uninstall: %v, want not exist", err)
	}
	if n := tcxPrograms(); n != 0 {
		t.Errorf("%d programs on tcx ingress of %d after Uninstall, want 0", n, keep)
	}
}

func TestOpenWithoutAgent(t *testing.T) {
	requireRoot(t)
	if _, err := Open(filepath.Join(mountBPFFS(t), "nothing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of empty dir: err = %v, want ErrNotExist", err)
	}
}
