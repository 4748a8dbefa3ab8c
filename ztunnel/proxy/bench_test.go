package proxy_test

import (
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const benchChunk = 256 << 10

// clientDialer dials from the client pod's IP. IP_BIND_ADDRESS_NO_PORT
// defers the port choice to connect, so the thousands of TIME_WAIT sockets
// a connection-rate run leaves do not make bind(port 0) scan for a port.
func clientDialer() net.Dialer {
	return net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0)),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			}); err != nil {
				return err
			}
			return serr
		},
	}
}

// throughput writes b.N chunks on c and waits until the sink has read
// them all. The whole process (client, proxies, sink) is in CPU time.
func throughput(b *testing.B, e *env, c *net.TCPConn) {
	chunk := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.CloseWrite()
	if n := <-e.sinkDone; n != int64(b.N)*benchChunk {
		b.Fatalf("sink read %d bytes, want %d", n, int64(b.N)*benchChunk)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)*benchChunk/1e6/cpu.Seconds(), "MB/cpu-s")
}

// BenchmarkOutboundInboundThroughput: client → outbound (A) → HBONE mTLS →
// inbound (B) → sink, all on loopback in this process.
func BenchmarkOutboundInboundThroughput(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	c := e.dial(b, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.sinkPort))
	throughput(b, e, c)
}

// BenchmarkDirectThroughput: client → sink over plain loopback TCP, the
// baseline for the one above.
func BenchmarkDirectThroughput(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0))}
	nc, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.sinkPort).String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	throughput(b, e, nc.(*net.TCPConn))
}

// BenchmarkConnectionRate: one new client connection per op through both
// proxies (a new HBONE stream on the warm pooled connection), one byte
// each way, then close.
func BenchmarkConnectionRate(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	dst := netip.AddrPortFrom(serverIP, e.echoPort)
	addr := e.captureAddr(b, e.outboundLn, dst)
	d := clientDialer()
	one := func() {
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c := nc.(*net.TCPConn)
		buf := []byte{'x'}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
		<-e.echoSeen
	}
	one() // warm the HBONE pool
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		one()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkDirectConnectionRate is BenchmarkConnectionRate without the
// proxies, its baseline.
func BenchmarkDirectConnectionRate(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	addr := netip.AddrPortFrom(serverIP, e.echoPort).String()
	d := clientDialer()
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		buf := []byte{'x'}
		if _, err := nc.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := nc.Read(buf); err != nil {
			b.Fatal(err)
		}
		nc.Close()
		<-e.echoSeen
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// requestResponse sends b.N 64-byte messages on c and reads each echo
// before the next: per-message latency and CPU of a keep-alive connection.
func requestResponse(b *testing.B, c *net.TCPConn) {
	msg := make([]byte, 64)
	got := make([]byte, len(msg))
	rt := func() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
	rt() // warm
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		rt()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkRequestResponse: 64-byte round trips on one connection through
// both proxies (client → outbound → HBONE → inbound → echo and back).
func BenchmarkRequestResponse(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	c := e.dial(b, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.echoPort))
	defer c.Close()
	requestResponse(b, c)
}

// BenchmarkDirectRequestResponse is BenchmarkRequestResponse over plain
// loopback TCP, its baseline.
func BenchmarkDirectRequestResponse(b *testing.B) {
	e := newEnv(b, envOpts{quiet: true})
	d := clientDialer()
	nc, err := d.Dial("tcp", netip.AddrPortFrom(serverIP, e.echoPort).String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	requestResponse(b, nc.(*net.TCPConn))
}
