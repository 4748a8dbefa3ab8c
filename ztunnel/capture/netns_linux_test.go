//go:build linux

package capture

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server answers every connection with its name and counts them.
type server struct {
	name     string
	accepted atomic.Int64
}

func serve(t testing.TB, ln net.Listener, name string) *server {
	s := &server{name: name}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	return s
}

// accepted is what a test proxy saw of a captured connection.
type accepted struct {
	orig, remote netip.AddrPort
	err          error
}

// testProxy stands in for ztunnel: a transparent listener in the node netns,
// registered in the sockmap, answering "proxy".
type testProxy struct {
	lns   []*net.TCPListener // IPv4 and IPv6
	conns chan accepted
}

// close closes the listeners, which removes them from the sockmap.
func (p *testProxy) close() {
	for _, ln := range p.lns {
		ln.Close()
	}
}

func newProxy(t testing.TB, n *node, sm *Sockmap, kind ListenerKind) *testProxy {
	t.Helper()
	p := &testProxy{conns: make(chan accepted, 16)}
	inNetns(t, n.ns, func() {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			ln, err := ListenTransparent(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			p.lns = append(p.lns, ln)
		}
	})
	t.Cleanup(p.close)
	for _, ln := range p.lns {
		if err := sm.Register(kind, ln); err != nil {
			t.Fatalf("register %s: %v", kind, err)
		}
		go p.serve(ln)
	}
	return p
}

func (p *testProxy) serve(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		orig, err := OriginalDst(c)
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		// Record before answering: a client that read the answer finds
		// the record.
		p.conns <- accepted{orig: orig, remote: netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), err: err}
		c.Write([]byte("proxy\n"))
		c.Close()
	}
}

// expect checks that the proxy accepted one connection from src to orig.
func (p *testProxy) expect(t testing.TB, src netip.Addr, orig netip.AddrPort) {
	t.Helper()
	select {
	case a := <-p.conns:
		if a.err != nil {
			t.Fatalf("OriginalDst: %v", a.err)
		}
		if a.orig != orig {
			t.Errorf("original destination = %v, want %v", a.orig, orig)
		}
		if a.remote.Addr() != src {
			t.Errorf("client address = %v, want %v", a.remote, src)
		}
	default:
		t.Errorf("proxy accepted no connection")
	}
}

// exchange connects from pod p to dst and returns the first line answered.
func exchange(t testing.TB, p *pod, dst netip.AddrPort, timeout time.Duration) (string, error) {
	t.Helper()
	c, err := p.dialer(t)(net.Dialer{Timeout: timeout}, dst)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func mustExchange(t testing.TB, p *pod, dst netip.AddrPort, want string) {
	t.Helper()
	got, err := exchange(t, p, dst, 5*time.Second)
	if err != nil {
		t.Fatalf("%s -> %v: %v", p.name, dst, err)
	}
	if got != want {
		t.Fatalf("%s -> %v answered by %q, want %q", p.name, dst, got, want)
	}
}

// setupNode loads the program, sets up routing in the node netns and returns
// the objects.
func setupNode(t testing.TB, n *node) *Objects {
	t.Helper()
	o := loadForTest(t)
	inNetns(t, n.ns, func() {
		r := NodeRouting{}
		must(t, r.Ensure())
	})
	// The node netns (and its rules) goes away with the test; nothing to undo
	// in the root netns.
	return o
}

func attach(t testing.TB, n *node, fn func() error) {
	t.Helper()
	inNetns(t, n.ns, func() { must(t, fn()) })
}

// TestCaptureOutbound: a connection from an enrolled pod is captured by the
// outbound listener with its original destination, goes direct once the pod is
// unenrolled, and waits (SYN dropped, never bypassed) while no listener is
// registered, connecting once one is.
func TestCaptureOutbound(t *testing.T) { forFamilies(t, testCaptureOutbound) }

func testCaptureOutbound(t *testing.T, v6 bool) {
	requireRoot(t)
	n := newNode(t, map[string]netip.Addr{
		"a": netip.MustParseAddr("10.77.1.2"),
		"b": netip.MustParseAddr("10.77.1.3"),
	})
	a, b := n.pods["a"], n.pods["b"]
	o := setupNode(t, n)
	srv := serve(t, b.listen(t, 8080), "B")
	dst := netip.AddrPortFrom(b.addr(v6), 8080)

	// Baseline: not enrolled, direct.
	mustExchange(t, a, dst, "B")

	attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
	proxy := newProxy(t, n, o.Sockmap(), Outbound)
	mustExchange(t, a, dst, "proxy")
	proxy.expect(t, a.addr(v6), dst)
	if got := srv.accepted.Load(); got != 1 {
		t.Fatalf("pod B accepted %d connections, want 1 (the baseline only)", got)
	}

	t.Run("unenrolled goes direct", func(t *testing.T) {
		attach(t, n, func() error { return o.DetachPod(a.ifindex, a.addr(v6)) })
		mustExchange(t, a, dst, "B")
		if got := srv.accepted.Load(); got != 2 {
			t.Fatalf("pod B accepted %d connections, want 2", got)
		}
		attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
		mustExchange(t, a, dst, "proxy")
		proxy.expect(t, a.addr(v6), dst)
	})

	t.Run("proxy down drops SYNs and never bypasses", func(t *testing.T) {
		before := srv.accepted.Load()
		proxy.close() // the kernel removes a closed socket from the sockmap
		stats0, err := o.Stats()
		must(t, err)
		_, err = exchange(t, a, dst, 300*time.Millisecond)
		if err == nil {
			t.Fatal("connected while no listener was registered")
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("dial error = %v, want a timeout (SYN dropped)", err)
		}
		stats1, err := o.Stats()
		must(t, err)
		if stats1.NoListener <= stats0.NoListener {
			t.Errorf("NoListener = %d, want > %d", stats1.NoListener, stats0.NoListener)
		}

		// A client that keeps trying connects once the proxy is back.
		type result struct {
			line string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			line, err := exchange(t, a, dst, 10*time.Second)
			done <- result{line, err}
		}()
		waitFor(t, "the SYN to be dropped", func() bool {
			s, err := o.Stats()
			return err == nil && s.NoListener > stats1.NoListener
		})
		proxy2 := newProxy(t, n, o.Sockmap(), Outbound)
		r := <-done
		if r.err != nil || r.line != "proxy" {
			t.Fatalf("after re-registering: %q, %v; want \"proxy\"", r.line, r.err)
		}
		proxy2.expect(t, a.addr(v6), dst)
		if got := srv.accepted.Load(); got != before {
			t.Errorf("pod B accepted %d connections while the proxy was down, want 0", got-before)
		}
	})
}

// TestCaptureInbound: connections from a non-enrolled pod to an enrolled pod
// land on the plaintext inbound listener, or on the HBONE listener for port
// 15008.
func TestCaptureInbound(t *testing.T) { forFamilies(t, testCaptureInbound) }

func testCaptureInbound(t *testing.T, v6 bool) {
	requireRoot(t)
	n := newNode(t, map[string]netip.Addr{
		"b": netip.MustParseAddr("10.77.1.3"),
		"c": netip.MustParseAddr("10.77.1.4"),
	})
	b, c := n.pods["b"], n.pods["c"]
	o := setupNode(t, n)
	srv := serve(t, b.listen(t, 8080), "B")
	serve(t, b.listen(t, 15008), "B-hbone")

	// The program runs on the veth of non-enrolled pod C (as on the uplink):
	// traffic from C is seen there. Pod B is enrolled.
	attach(t, n, func() error { return o.Attach(c.ifindex) })
	attach(t, n, func() error { return o.AttachPod(b.ifindex, b.addr(v6)) })
	plain := newProxy(t, n, o.Sockmap(), InboundPlain)
	hbone := newProxy(t, n, o.Sockmap(), HBONE)

	dst := netip.AddrPortFrom(b.addr(v6), 8080)
	mustExchange(t, c, dst, "proxy")
	plain.expect(t, c.addr(v6), dst)

	hdst := netip.AddrPortFrom(b.addr(v6), 15008)
	mustExchange(t, c, hdst, "proxy")
	hbone.expect(t, c.addr(v6), hdst)

	if got := srv.accepted.Load(); got != 0 {
		t.Errorf("pod B accepted %d connections, want 0", got)
	}

	// Unenrolled B: C reaches it directly although the program stays on C's veth.
	must(t, o.Unenroll(b.addr(v6)))
	mustExchange(t, c, dst, "B")
}

// TestCaptureProxyUpstreamDoesNotLoop: with both pods enrolled, the proxy's
// upstream connection to pod B leaves the node netns through B's veth egress
// and is not captured again; with the client's address kept as source, B's
// replies are steered back to the proxy's upstream socket.
func TestCaptureProxyUpstreamDoesNotLoop(t *testing.T) {
	forFamilies(t, testCaptureProxyUpstreamDoesNotLoop)
}

func testCaptureProxyUpstreamDoesNotLoop(t *testing.T, v6 bool) {
	requireRoot(t)
	for _, preserve := range []bool{false, true} {
		name := map[bool]string{false: "node source", true: "client source preserved"}[preserve]
		t.Run(name, func(t *testing.T) {
			n := newNode(t, map[string]netip.Addr{
				"a": netip.MustParseAddr("10.77.1.2"),
				"b": netip.MustParseAddr("10.77.1.3"),
			})
			a, b := n.pods["a"], n.pods["b"]
			o := setupNode(t, n)
			ln := b.listen(t, 8080)
			remotes := make(chan netip.Addr, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					remotes <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
					c.Write([]byte("B\n"))
					c.Close()
				}
			}()
			attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
			attach(t, n, func() error { return o.AttachPod(b.ifindex, b.addr(v6)) })
			copyProxy(t, n, o.Sockmap(), Outbound, preserve)
			// A loop would land the upstream connection here.
			loop := newProxy(t, n, o.Sockmap(), InboundPlain)

			mustExchange(t, a, netip.AddrPortFrom(b.addr(v6), 8080), "B")
			wantSrc := nodeIP
			if v6 {
				wantSrc = nodeIP6
			}
			if preserve {
				wantSrc = a.addr(v6)
			}
			if got := <-remotes; got != wantSrc {
				t.Errorf("pod B saw the connection from %v, want %v", got, wantSrc)
			}
			select {
			case c := <-loop.conns:
				t.Errorf("proxy upstream was captured again: %+v", c)
			default:
			}
			s, err := o.Stats()
			must(t, err)
			if s.AssignedOutbound != 1 || s.AssignedInboundPlain != 0 {
				t.Errorf("stats = %+v, want one outbound SYN and no inbound", s)
			}
			if preserve && s.AssignedEstablished == 0 {
				t.Error("no reply of B was assigned to the proxy's upstream socket")
			}
		})
	}
}

// TestCaptureSpoofedSourceDropped: a pod sending with an enrolled pod's
// address is not captured as that pod: its packets are dropped.
func TestCaptureSpoofedSourceDropped(t *testing.T) { forFamilies(t, testCaptureSpoofedSourceDropped) }

func testCaptureSpoofedSourceDropped(t *testing.T, v6 bool) {
	requireRoot(t)
	n := newNode(t, map[string]netip.Addr{
		"a": netip.MustParseAddr("10.77.1.2"),
		"b": netip.MustParseAddr("10.77.1.3"),
		"c": netip.MustParseAddr("10.77.1.4"),
	})
	a, b, c := n.pods["a"], n.pods["b"], n.pods["c"]
	o := setupNode(t, n)
	srv := serve(t, b.listen(t, 8080), "B")
	attach(t, n, func() error { return o.AttachPod(a.ifindex, a.addr(v6)) })
	attach(t, n, func() error { return o.Attach(c.ifindex) })
	proxy := newProxy(t, n, o.Sockmap(), Outbound)

	d := net.Dialer{
		Timeout:   300 * time.Millisecond,
		LocalAddr: &net.TCPAddr{IP: a.addr(v6).AsSlice()},
		Control:   setTransparent, // send from a foreign address
	}
	_, err := c.dialer(t)(d, netip.AddrPortFrom(b.addr(v6), 8080))
	if err == nil {
		t.Fatal("pod C connected with pod A's address")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial error = %v, want a timeout (SYN sent and dropped)", err)
	}
	s, err := o.Stats()
	must(t, err)
	if s.Spoofed == 0 || s.AssignedOutbound != 0 {
		t.Errorf("stats = %+v, want Spoofed > 0 and nothing captured", s)
	}
	if got := srv.accepted.Load(); got != 0 {
		t.Errorf("pod B accepted %d connections, want 0", got)
	}
	select {
	case c := <-proxy.conns:
		t.Errorf("spoofed connection captured as pod A: %+v", c)
	default:
	}
}

// waitFor polls cond until it holds; the test's own deadline bounds it.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forFamilies runs test for IPv4 and IPv6.
func forFamilies(t *testing.T, test func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "IPv4", true: "IPv6"}[v6], func(t *testing.T) { test(t, v6) })
	}
}
