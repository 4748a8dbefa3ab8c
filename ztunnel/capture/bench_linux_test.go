//go:build linux

package capture

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// sink reads and discards everything; each connection's byte count is sent
// on done when it ends.
func sink(ln net.Listener) (done chan int64) {
	done = make(chan int64, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				c.Close()
				done <- n
			}()
		}
	}()
	return done
}

// copyProxy is a minimal captured path: accept, dial the original destination
// from the node netns (with the client's address as source when
// preserveSource), copy both ways (splice between TCP sockets).
func copyProxy(t testing.TB, n *node, sm *Sockmap, kind ListenerKind, preserveSource bool) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		var ln *net.TCPListener
		inNetns(t, n.ns, func() {
			var err error
			if ln, err = ListenTransparent(context.Background(), addr); err != nil {
				t.Fatal(err)
			}
		})
		t.Cleanup(func() { ln.Close() })
		if err := sm.Register(kind, ln); err != nil {
			t.Fatal(err)
		}
		go copyLoop(n, ln, preserveSource)
	}
}

func copyLoop(n *node, ln *net.TCPListener, preserveSource bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			dst, err := OriginalDst(c)
			if err != nil {
				return
			}
			d := net.Dialer{Timeout: 5 * time.Second}
			if preserveSource {
				d.LocalAddr = &net.TCPAddr{IP: c.RemoteAddr().(*net.TCPAddr).IP}
				d.Control = setTransparent
			}
			var up net.Conn
			// Only ever dial inside the node netns.
			if err := inNetnsErr(n.ns, func() { up, err = d.Dial("tcp", dst.String()) }); err != nil || up == nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); wg.Done() }()
			io.Copy(up, c)
			up.(*net.TCPConn).CloseWrite()
			wg.Wait()
		}()
	}
}

type benchMode struct {
	name  string
	setup func(b *testing.B, n *node, o *Objects)
}

var benchModes = []benchMode{
	{"no-program", func(*testing.B, *node, *Objects) {}},
	{"attached-not-enrolled", func(b *testing.B, n *node, o *Objects) {
		attach(b, n, func() error { return o.Attach(n.pods["a"].ifindex) })
		attach(b, n, func() error { return o.Attach(n.pods["b"].ifindex) })
	}},
	{"captured-go-copy-proxy", func(b *testing.B, n *node, o *Objects) {
		attach(b, n, func() error { return o.AttachPod(n.pods["a"].ifindex, n.pods["a"].ip) })
		attach(b, n, func() error { return o.Attach(n.pods["b"].ifindex) })
		copyProxy(b, n, o.Sockmap(), Outbound, false)
	}},
}

func benchNode(b *testing.B) (*node, *Objects) {
	requireRoot(b)
	n := newNode(b, map[string]netip.Addr{
		"a": netip.MustParseAddr("10.77.1.2"),
		"b": netip.MustParseAddr("10.77.1.3"),
	})
	return n, setupNode(b, n)
}

// BenchmarkPodToPodThroughput: one TCP stream pod A → pod B through the node
// netns, 1 MiB per op.
func BenchmarkPodToPodThroughput(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			n, o := benchNode(b)
			m.setup(b, n, o)
			a, pb := n.pods["a"], n.pods["b"]
			done := sink(pb.listen(b, 9000))
			c, err := a.dialer(b)(net.Dialer{Timeout: 5 * time.Second}, netip.AddrPortFrom(pb.ip, 9000))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			got := <-done // the time to drain counts
			b.StopTimer()
			c.Close()
			if want := int64(b.N) * int64(len(buf)); got != want {
				b.Fatalf("sink got %d bytes, want %d", got, want)
			}
			checkMode(b, m, o)
		})
	}
}

// BenchmarkPodToPodConnect: connect, send a byte, read the answer, close.
func BenchmarkPodToPodConnect(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			n, o := benchNode(b)
			m.setup(b, n, o)
			a, pb := n.pods["a"], n.pods["b"]
			ln := pb.listen(b, 9001)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						var one [1]byte
						io.ReadFull(c, one[:])
						c.Write(one[:])
						c.Close()
					}()
				}
			}()
			dial := a.dialer(b)
			dst := netip.AddrPortFrom(pb.ip, 9001)
			b.ResetTimer()
			for range b.N {
				c, err := dial(net.Dialer{Timeout: 5 * time.Second}, dst)
				if err != nil {
					b.Fatal(err)
				}
				var one = [1]byte{'x'}
				if _, err := c.Write(one[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.StopTimer()
			checkMode(b, m, o)
		})
	}
}

// checkMode fails a benchmark whose connections were not (or were) captured.
func checkMode(b *testing.B, m benchMode, o *Objects) {
	s, err := o.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if captured := s.AssignedOutbound > 0; captured != (m.name == "captured-go-copy-proxy") {
		b.Fatalf("mode %s: %d connections captured", m.name, s.AssignedOutbound)
	}
}
