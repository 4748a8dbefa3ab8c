//go:build linux

package capture

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestCaptureSYNAfterTimeWait: a client reusing its source port while the
// proxy's side of the previous connection with the same addresses is in
// TIME_WAIT in the node netns connects again.
func TestCaptureSYNAfterTimeWait(t *testing.T) { forFamilies(t, testCaptureSYNAfterTimeWait) }

func testCaptureSYNAfterTimeWait(t *testing.T, v6 bool) {
	requireRoot(t)
	n := newNode(t, map[string]netip.Addr{
		"a": netip.MustParseAddr("10.77.1.2"),
		"b": netip.MustParseAddr("10.77.1.3"),
	})
	a, b := n.pods["a"], n.pods["b"]
	o := setupNode(t, n)
	attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
	proxy := newProxy(t, n, o.Sockmap(), Outbound)
	dst := netip.AddrPortFrom(b.addr(v6), 8080)
	src := &net.TCPAddr{IP: a.addr(v6).AsSlice(), Port: 41234}
	for i := range 3 {
		c, err := a.dialer(t)(net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}, dst)
		if err != nil {
			t.Fatalf("connection #%d from %v: %v", i+1, src, err)
		}
		buf := make([]byte, 16)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "proxy\n" {
			t.Fatalf("connection #%d: read %q, %v", i+1, buf[:k], err)
		}
		proxy.expect(t, a.addr(v6), dst)
		// Wait for the proxy's FIN: it closed first, so its side goes to
		// TIME_WAIT once we close.
		if k, err := c.Read(buf); err != io.EOF {
			t.Fatalf("connection #%d: read %q, %v; want EOF", i+1, buf[:k], err)
		}
		c.Close()
		var state uint8
		for deadline := time.Now().Add(10 * time.Second); state != tcpTimeWait; time.Sleep(10 * time.Millisecond) {
			if state = proxySideState(t, n, dst, src); time.Now().After(deadline) {
				st, _ := o.Stats()
				t.Fatalf("connection #%d: the proxy's socket is in state %d, want TIME_WAIT (%d); stats %+v", i+1, state, tcpTimeWait, st)
			}
		}
	}
	s, err := o.Stats()
	must(t, err)
	// Only the first SYN went to the listener from tc; the later ones went
	// to the TIME_WAIT socket and on to the listener through sk_lookup (not
	// through a RST and a SYN retransmitted a second later, which tc would
	// count as outbound again).
	if s.AssignedOutbound != 1 || s.LookupAssigned != 3 {
		t.Errorf("stats = %+v, want AssignedOutbound 1 and LookupAssigned 3 (one per SYN)", s)
	}
}

const tcpTimeWait = 6 // TCP_TIME_WAIT

// proxySideState is the TCP state of the node netns socket local=dst,
// remote=src (0 if there is none).
func proxySideState(t testing.TB, n *node, dst netip.AddrPort, src *net.TCPAddr) uint8 {
	family := uint8(unix.AF_INET)
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	// The package-level function: a Handle's sock_diag socket would be
	// opened in the calling thread's netns, not the Handle's.
	var socks []*netlink.Socket
	var err error
	inNetns(t, n.ns, func() { socks, err = netlink.SocketDiagTCP(family) })
	if err != nil {
		return 0
	}
	for _, sk := range socks {
		if sk.ID.SourcePort == dst.Port() && int(sk.ID.DestinationPort) == src.Port &&
			sk.ID.Source.Equal(dst.Addr().AsSlice()) && sk.ID.Destination.Equal(src.IP) {
			return sk.State
		}
	}
	return 0
}
