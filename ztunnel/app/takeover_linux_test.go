//go:build linux

package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
	"github.com/ambient-mesh/ambient/ztunnel/config"
)

// Addresses of the test's own network namespaces (nothing routes off them).
var (
	tkNodeIP = netip.MustParseAddr("10.78.0.1")
	tkPodIP  = netip.MustParseAddr("10.78.1.2")
	tkGW     = netip.MustParseAddr("169.254.1.1")
	tkDst    = netip.AddrPortFrom(netip.MustParseAddr("10.78.9.9"), 80) // no such host: only capture answers
)

func tkNetns(t *testing.T) netns.NsHandle {
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
		t.Fatalf("restore netns: %v", err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNetns runs fn on a thread in ns; the thread is never reused (it exits
// with its goroutine), so sockets fn creates belong to ns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func hostRoute(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// tkTopology builds a node netns with capture loaded (on a fresh bpffs) and
// one enrolled pod behind a routed veth; it returns the node netns, the pod
// netns and the bpffs directory (ztunnel's --bpffs).
func tkTopology(t *testing.T) (node, pod netns.NsHandle, bpffs string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	}
	bpffs = t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Skipf("cannot mount a bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	pinDir := filepath.Join(bpffs, "capture")
	objs, err := capture.Load(capture.Options{PinDir: pinDir})
	if errors.Is(err, capture.ErrNotSupported) {
		t.Skipf("kernel lacks a capture feature: %v", err)
	}
	must(t, err)
	t.Cleanup(func() {
		_ = capture.Uninstall(pinDir)
		_ = objs.Close()
	})

	node, pod = tkNetns(t), tkNetns(t)
	hn, err := netlink.NewHandleAt(node)
	must(t, err)
	defer hn.Close()
	hp, err := netlink.NewHandleAt(pod)
	must(t, err)
	defer hp.Close()
	for _, h := range []*netlink.Handle{hn, hp} {
		lo, err := h.LinkByName("lo")
		must(t, err)
		must(t, h.LinkSetUp(lo))
	}
	lo, err := hn.LinkByName("lo")
	must(t, err)
	must(t, hn.AddrAdd(lo, &netlink.Addr{IPNet: hostRoute(tkNodeIP)}))
	must(t, hn.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vpod"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod))}))
	host, err := hn.LinkByName("vpod")
	must(t, err)
	must(t, hn.LinkSetUp(host))
	must(t, hn.AddrAdd(host, &netlink.Addr{IPNet: hostRoute(tkGW)}))
	must(t, hn.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostRoute(tkPodIP), Scope: netlink.SCOPE_LINK, Src: tkNodeIP.AsSlice()}))
	eth0, err := hp.LinkByName("eth0")
	must(t, err)
	must(t, hp.AddrAdd(eth0, &netlink.Addr{IPNet: hostRoute(tkPodIP)}))
	must(t, hp.LinkSetUp(eth0))
	must(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: hostRoute(tkGW), Scope: netlink.SCOPE_LINK}))
	must(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: tkGW.AsSlice(), Src: tkPodIP.AsSlice()}))
	must(t, inNetns(node, func() error {
		if err := (capture.NodeRouting{}).Ensure(); err != nil {
			return err
		}
		return objs.AttachPod(host.Attrs().Index, tkPodIP)
	}))
	return node, pod, bpffs
}

// tkProxy is one ztunnel process's listeners (openListeners, as runProxy
// opens them) answering every outbound connection with its name.
type tkProxy struct {
	lns    *listeners
	cancel context.CancelFunc
	done   chan struct{}
}

func startTKProxy(t *testing.T, node netns.NsHandle, cfg config.Config, name string, log *zap.Logger, configReady func() bool) *tkProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &tkProxy{cancel: cancel, done: make(chan struct{})}
	must(t, inNetns(node, func() error {
		var err error
		p.lns, err = openListeners(ctx, cfg, log.Named(name))
		return err
	}))
	go func() {
		for {
			c, err := p.lns.outbound.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", name)
			c.Close()
		}
	}()
	go func() {
		defer close(p.done)
		_ = p.lns.keep(ctx, configReady)
	}()
	t.Cleanup(p.stop)
	return p
}

// waitRegistered waits until the proxy's listeners are registered.
func (p *tkProxy) waitRegistered(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.lns.ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not registered with capture: %v", p.lns.ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop is the end of a drain: the listeners close, registration stops.
func (p *tkProxy) stop() {
	p.cancel()
	<-p.done
	p.lns.close()
}

// TestListenerTakeover: a second proxy process on the node takes over the
// capture registration from the first while it still runs (its configured
// addresses are still held, so it listens elsewhere), then the first stops.
// A client connecting in a loop from an enrolled pod never fails, is
// answered by the new process from the takeover on, and the old process's
// registration loop does not take the slots back.
func TestListenerTakeover(t *testing.T) {
	node, pod, bpffs := tkTopology(t)
	cfg := config.Config{
		Capture: true, BPFFS: bpffs, NodeIP: tkNodeIP,
		OutboundAddr: "0.0.0.0:15001", InboundAddr: "0.0.0.0:15008", PlainAddr: "0.0.0.0:15006",
	}
	log := zaptest.NewLogger(t)
	old := startTKProxy(t, node, cfg, "old", log, nil)
	old.waitRegistered(t)

	type answer struct {
		at   time.Time
		name string
		err  error
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var loops sync.WaitGroup
	for range 2 {
		loops.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := answer{}
				a.err = inNetns(pod, func() error {
					c, err := net.DialTimeout("tcp", tkDst.String(), 5*time.Second)
					if err != nil {
						return err
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					a.name = line
					return err
				})
				a.at = time.Now()
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		loops.Wait()
	}()
	waitAnswer := func(name string, since time.Time) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			for _, a := range answers {
				if a.err == nil && a.name == name+"\n" && a.at.After(since) {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("no answer from %s since %s", name, since.Format(time.TimeOnly))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitAnswer("old", time.Time{})

	// The new process starts while the old one runs: same configuration.
	// It takes the slots over only once it has its own configuration.
	var newReady atomic.Bool
	newP := startTKProxy(t, node, cfg, "new", log, newReady.Load)
	time.Sleep(300 * time.Millisecond)
	if err := newP.lns.ready(); !errors.Is(err, errConfigPending) {
		t.Fatalf("new process without configuration: registration state %v, want %v", err, errConfigPending)
	}
	flip := time.Now()
	newReady.Store(true)
	newP.waitRegistered(t)
	switched := time.Now()
	if a := newP.lns.outbound.Addr().String(); a == cfg.OutboundAddr {
		t.Fatalf("the new process listens on %s, held by the old one", a)
	}
	waitAnswer("new", switched)
	// Over a second: the old process's registration loop (1 s ticks) runs
	// and must leave the new process's sockets in place.
	time.Sleep(1200 * time.Millisecond)
	old.stop() // the old process ends its drain
	stopped := time.Now()
	waitAnswer("new", stopped.Add(100*time.Millisecond))
	close(stop)
	loops.Wait()

	var failed []string
	oldAfter, newEarly := 0, 0
	counts := map[string]int{}
	for _, a := range answers {
		if a.err != nil {
			failed = append(failed, a.err.Error())
			continue
		}
		counts[strings.TrimSpace(a.name)]++
		if a.name == "new\n" && a.at.Before(flip) {
			newEarly++
		}
		if a.name == "old\n" && a.at.After(switched.Add(100*time.Millisecond)) {
			oldAfter++
		}
	}
	t.Logf("answers: %v, failed %d", counts, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d connections failed during the takeover: %v", len(failed), failed[:min(3, len(failed))])
	}
	if oldAfter > 0 {
		t.Errorf("the old process answered %d connections after the new one took over", oldAfter)
	}
	if newEarly > 0 {
		t.Errorf("the new process answered %d connections before it had its configuration", newEarly)
	}
	if counts["old"] == 0 || counts["new"] == 0 {
		t.Errorf("answers %v: want both processes to have served", counts)
	}
}
