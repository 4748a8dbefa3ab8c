//go:build linux

package captureagent

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

// nsDatapath runs the real datapath's Attach in the node netns: TCX attaches
// to an ifindex of the calling thread's netns. In production the agent runs
// with hostNetwork and needs no such wrapper.
type nsDatapath struct {
	*capture.Objects
	ns netns.NsHandle
}

func (d nsDatapath) Attach(ifindex int) error {
	var err error
	if nerr := inNetns(d.ns, func() { err = d.Objects.Attach(ifindex) }); nerr != nil {
		return nerr
	}
	return err
}

// nsSetup runs node setup in the node netns.
type nsSetup struct {
	nodeSetup
	ns netns.NsHandle
}

func (s nsSetup) Ensure(ctx context.Context) error {
	var err error
	if nerr := inNetns(s.ns, func() { err = s.nodeSetup.Ensure(ctx) }); nerr != nil {
		return nerr
	}
	return err
}

// TestAgentCapturesLive runs the agent against a fake API server and the real
// eBPF capture in a netns node: labelling the namespace makes pod A's
// connection to pod B land on a transparent listener registered in the
// sockmap; unlabelling makes it go direct again. No pod restarts.
func TestAgentCapturesLive(t *testing.T) {
	requireRoot(t)
	ipA, ipB := netip.MustParseAddr("10.77.1.2"), netip.MustParseAddr("10.77.1.3")
	n := newTestNode(t, map[string]netip.Addr{"a": ipA, "b": ipB})
	cfg := Config{BPFFS: mountBPFFS(t)}
	objs := loadObjects(t, cfg)
	t.Cleanup(func() {
		var err error
		if nerr := inNetns(n.ns, func() { err = Uninstall(context.Background(), cfg, nil) }); nerr != nil || err != nil {
			t.Errorf("Uninstall: %v %v", nerr, err)
		}
	})
	setup := nsSetup{nodeSetup: nodeSetup{}, ns: n.ns}
	if haveNFT() {
		setup.notrack = &Notrack{}
	}
	must(t, setup.Ensure(context.Background()))

	// Pod B serves; the "proxy" is a transparent listener in the node netns,
	// registered for outbound and plaintext-inbound capture.
	serve(listenIn(t, n.pods["b"].ns, "0.0.0.0:8080"), "B")
	for _, kind := range []capture.ListenerKind{capture.Outbound, capture.InboundPlain} {
		var ln *net.TCPListener
		var err error
		must(t, inNetns(n.ns, func() { ln, err = capture.ListenTransparent(context.Background(), "127.0.0.1:0") }))
		must(t, err)
		t.Cleanup(func() { ln.Close() })
		must(t, objs.RegisterListener(kind, ln))
		serve(ln, "proxy")
	}

	client := fake.NewClientset(
		namespace("app", nil),
		pod("app", "a", testNode, ipA.String(), nil),
		pod("app", "b", testNode, ipB.String(), nil),
	)
	agent, err := New(Options{
		Client:    clientsetKube{client},
		NodeName:  testNode,
		Datapath:  nsDatapath{Objects: objs, ns: n.ns},
		Veths:     RouteVeths{Handle: n.h},
		Uplink:    NodeUplink{NodeIP: nodeIP, Handle: n.h},
		NodeSetup: setup,
		Resync:    time.Hour,
		Logger:    zaptest.NewLogger(t),
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	a, b := n.pods["a"], n.pods["b"]
	wantAttached := []int{n.uplink, a.ifindex, b.ifindex}
	waitFor(t, "uplink and pod veths attached", func() bool {
		got, err := objs.Attached()
		return err == nil && sameSet(got, wantAttached)
	})
	dst := netip.AddrPortFrom(ipB, 8080)
	mustExchange(t, a, dst, "B") // attached, not enrolled: direct

	ns, err := client.CoreV1().Namespaces().Get(ctx, "app", metav1.GetOptions{})
	must(t, err)
	ns.Labels = map[string]string{DataplaneModeLabel: DataplaneModeAmbient}
	_, err = client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	must(t, err)
	waitFor(t, "pods a and b enrolled", func() bool {
		en, err := objs.Enrolled()
		return err == nil && len(en) == 2 && en[ipA] == a.ifindex && en[ipB] == b.ifindex
	})
	mustExchange(t, a, dst, "proxy")
	stats, err := objs.Stats()
	must(t, err)
	if stats.AssignedOutbound == 0 {
		t.Errorf("AssignedOutbound = 0 after a captured connection")
	}

	ns.Labels = nil
	_, err = client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	must(t, err)
	waitFor(t, "pods unenrolled", func() bool {
		en, err := objs.Enrolled()
		return err == nil && len(en) == 0
	})
	mustExchange(t, a, dst, "B")
	if got, err := objs.Attached(); err != nil || !sameSet(got, wantAttached) {
		t.Errorf("attached after unenroll = %v, %v; want %v (veths stay attached)", got, err, wantAttached)
	}
}

func sameSet(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[int]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
