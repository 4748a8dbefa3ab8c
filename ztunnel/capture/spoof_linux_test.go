package capture

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestCaptureEnrolledPodCannotBorrowAnotherIdentity: pod A and pod B are both
// enrolled. A connection A opens with its own address is captured as A's;
// one A opens from its own veth with B's address (IP_TRANSPARENT, as a
// hostile workload with NET_ADMIN would) is neither captured, so ztunnel
// never sees a connection it would attribute to B, nor delivered: its SYNs
// are dropped and counted as spoofed. (TestCaptureSpoofedSourceDropped covers
// a non-enrolled pod borrowing an enrolled address.)
func TestCaptureEnrolledPodCannotBorrowAnotherIdentity(t *testing.T) {
	forFamilies(t, testCaptureEnrolledPodCannotBorrowAnotherIdentity)
}

func testCaptureEnrolledPodCannotBorrowAnotherIdentity(t *testing.T, v6 bool) {
	requireRoot(t)
	n := newNode(t, map[string]netip.Addr{
		"a": netip.MustParseAddr("10.77.1.2"),
		"b": netip.MustParseAddr("10.77.1.3"),
		"c": netip.MustParseAddr("10.77.1.4"),
	})
	a, b, c := n.pods["a"], n.pods["b"], n.pods["c"]
	o := setupNode(t, n)
	srv := serve(t, c.listen(t, 8080), "C")
	attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
	attach(t, n, func() error { return o.AttachPod(b.ifindex, b.addr(v6)) })
	attach(t, n, func() error { return o.Attach(c.ifindex) })
	proxy := newProxy(t, n, o.Sockmap(), Outbound)
	dst := netip.AddrPortFrom(c.addr(v6), 8080)

	// A with its own address: captured, attributed to A.
	mustExchange(t, a, dst, "proxy")
	proxy.expect(t, a.addr(v6), dst)
	s0, err := o.Stats()
	must(t, err)

	// A with B's address, from A's veth.
	d := net.Dialer{
		Timeout:   300 * time.Millisecond,
		LocalAddr: &net.TCPAddr{IP: b.addr(v6).AsSlice()},
		Control:   setTransparent,
	}
	_, err = a.dialer(t)(d, dst)
	if err == nil {
		t.Fatal("pod A connected with pod B's address")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial error = %v, want a timeout (SYN sent and dropped)", err)
	}
	s1, err := o.Stats()
	must(t, err)
	if s1.Spoofed <= s0.Spoofed {
		t.Errorf("Spoofed = %d, want > %d", s1.Spoofed, s0.Spoofed)
	}
	if s1.AssignedOutbound != s0.AssignedOutbound || s1.AssignedInboundPlain != s0.AssignedInboundPlain {
		t.Errorf("stats = %+v after %+v: the spoofed SYN was captured", s1, s0)
	}
	select {
	case got := <-proxy.conns:
		t.Errorf("spoofed connection reached the proxy as %v", got.remote)
	default:
	}
	if got := srv.accepted.Load(); got != 0 {
		t.Errorf("pod C accepted %d connections, want 0 (the captured one ended at the proxy)", got)
	}

	// B itself is still captured as B: the drop is about the interface, not
	// the address.
	mustExchange(t, b, dst, "proxy")
	proxy.expect(t, b.addr(v6), dst)
}
