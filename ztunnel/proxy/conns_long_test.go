//go:build long

package proxy_test

// The 10,000-connection test (issue #8, "Load and leaks"): `make test-long`
// runs it; `make test` does not (build tag long). It depends on nothing but
// the package's exported API.
//
// RLIMIT_NOFILE is 20,000 here and cannot be raised without
// CAP_SYS_RESOURCE, and 10,000 tunneled connections need about 40,000
// descriptors in all (client, outbound accept, inbound pod dial, echo
// accept), so each part runs in its own process, as in a real node: this
// test binary re-executed as an echo server, an inbound ztunnel (node B)
// and an outbound ztunnel (node A), with the test as the client. Each
// child answers "stats" on stdin with its own runtime.MemStats, RSS,
// goroutines and open descriptors, so every figure is one ztunnel's own.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/proxy"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Addresses of the long test's two pods (own range, so it never meets the
// other tests' listeners).
var (
	longClientIP = netip.MustParseAddr("127.0.1.2")
	longServerIP = netip.MustParseAddr("127.0.1.3")
)

// longMaxPerConn bounds what one idle tunneled connection may cost one
// ztunnel in Go heap and goroutine stacks.
const longMaxPerConn = 64 << 10

// Environment of the re-executed children.
const (
	longEnvRole    = "AMBIENT_LONG_ROLE" // echo, inbound, outbound
	longEnvCADir   = "AMBIENT_LONG_CA"   // ca.pem, ca-key.pem
	longEnvEcho    = "AMBIENT_LONG_ECHO" // echo server address (outbound)
	longEnvHBONE   = "AMBIENT_LONG_HBONE_PORT"
	longChildReady = "LONG-READY "
	longChildStats = "LONG-STATS "
)

// longStats is what a child reports about itself.
type longStats struct {
	Live       uint64 // HeapAlloc + StackInuse after two GCs
	RSS        uint64
	Goroutines int
	FDs        int
	Conns      int // connections its proxy tracks (ztunnels)
}

type longCerts struct{ *hbonetest.Certs }

func (c longCerts) ServerCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.ClientCertificate(ctx, id)
}

// longEcho answers each line it reads with the same line, with a small
// buffer so that the echo server stays cheap.
func longEcho(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

func longEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// longSelfStats measures this process.
func longSelfStats() (longStats, error) {
	runtime.GC()
	runtime.GC() // a second cycle empties sync.Pool victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := longStats{Live: ms.HeapAlloc + ms.StackInuse, Goroutines: runtime.NumGoroutine()}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return st, fmt.Errorf("parse VmRSS: %w", err)
			}
			st.RSS = kb << 10
		}
	}
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return st, fmt.Errorf("list fds: %w", err)
	}
	st.FDs = len(es)
	return st, nil
}

func longWriteCA(t *testing.T, ca *hbonetest.CA) string {
	t.Helper()
	dir := t.TempDir()
	key, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	for name, blk := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: ca.Cert.Raw},
		"ca-key.pem": {Type: "EC PRIVATE KEY", Bytes: key},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func longReadCA(dir string) (*hbonetest.CA, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", name)
		}
		return blk.Bytes, nil
	}
	certDER, err := read("ca.pem")
	if err != nil {
		return nil, err
	}
	keyDER, err := read("ca-key.pem")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	var key *ecdsa.PrivateKey
	if key, err = x509.ParseECPrivateKey(keyDER); err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	return &hbonetest.CA{TrustDomain: "cluster.local", Cert: cert, Key: key}, nil
}

func longWorkload(uid, ns, sa, node string, ip netip.Addr) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: &workloadapi.Workload{
		Uid: uid, Name: uid, Namespace: ns, ServiceAccount: sa, Node: node, Addresses: [][]byte{ip.AsSlice()},
		TunnelProtocol: workloadapi.TunnelProtocol_HBONE, CanonicalName: uid, WorkloadName: uid,
	}}}
}

// TestLongHelperProcess is a child of TestLongTenThousandConnections (it
// skips unless AMBIENT_LONG_ROLE is set): it serves its role, prints
// "LONG-READY <addr>", answers "stats" lines on stdin and stops at stdin's
// EOF.
func TestLongHelperProcess(t *testing.T) {
	role := os.Getenv(longEnvRole)
	if role == "" {
		t.Skip("child process of TestLongTenThousandConnections")
	}
	if err := longRunChild(role); err != nil {
		fmt.Fprintln(os.Stderr, "long child", role+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func longRunChild(role string) error {
	var (
		ln    net.Listener
		px    *proxy.Proxy
		err   error
		wg    sync.WaitGroup
		stop  = func() {}
		conns = func() int { return 0 }
	)
	switch role {
	case "echo":
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(longServerIP, 0).String()); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		var live atomic.Int64
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				live.Add(1)
				wg.Go(func() { defer live.Add(-1); longEcho(c) })
			}
		})
		conns = func() int { return int(live.Load()) }
		stop = func() { ln.Close(); wg.Wait() }
	case "inbound", "outbound":
		ca, err := longReadCA(os.Getenv(longEnvCADir))
		if err != nil {
			return err
		}
		cs := &hbonetest.Certs{}
		for _, id := range []spiffe.Identity{ca.Identity("a", "client"), ca.Identity("b", "server")} {
			c, err := ca.Issue(id, time.Hour)
			if err != nil {
				return fmt.Errorf("issue %s: %w", id, err)
			}
			cs.Set(id, c)
		}
		st := state.NewStore()
		if err := st.ReplaceAddresses(map[string]*workloadapi.Address{
			"client": longWorkload("client", "a", "client", "A", longClientIP),
			"server": longWorkload("server", "b", "server", "B", longServerIP),
		}); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		cfg := proxy.Config{
			Store: st, Certs: longCerts{cs}, Bundle: ca.Bundle, Logger: zap.NewNop(),
			// Idle HBONE connections go away quickly so that the leak
			// check can expect the baseline back.
			HBONE: hbone.Limits{IdleTimeout: time.Second}, DrainTimeout: time.Second,
		}
		if role == "inbound" {
			if ln, err = net.Listen("tcp", netip.AddrPortFrom(longServerIP, 0).String()); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			cfg.Local, cfg.Inbound = route.Local{Node: "B"}, ln
		} else {
			echo, err := netip.ParseAddrPort(os.Getenv(longEnvEcho))
			if err != nil {
				return fmt.Errorf("%s: %w", longEnvEcho, err)
			}
			port, err := strconv.ParseUint(os.Getenv(longEnvHBONE), 10, 16)
			if err != nil {
				return fmt.Errorf("%s: %w", longEnvHBONE, err)
			}
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			cfg.Local, cfg.Outbound = route.Local{Node: "A"}, ln
			cfg.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return echo, nil }
			cfg.RouteOptions = route.Options{HBONEPort: uint16(port), Rand: rand.New(rand.NewPCG(1, 2))}
		}
		if px, err = proxy.New(cfg); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- px.Run(ctx) }()
		conns = func() int { return len(px.Connections()) }
		stop = func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Fprintln(os.Stderr, "proxy Run:", err)
			}
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	defer stop()
	fmt.Println(longChildReady + ln.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		st, err := longSelfStats()
		if err != nil {
			return err
		}
		st.Conns = conns()
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("marshal stats: %w", err)
		}
		fmt.Println(longChildStats + string(b))
	}
	return nil
}

// longChild is a running TestLongHelperProcess.
type longChild struct {
	role string
	addr string
	in   io.WriteCloser
	out  *bufio.Scanner
	cmd  *exec.Cmd
}

func longStartChild(t *testing.T, role string, env ...string) *longChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLongHelperProcess$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), longEnvRole+"="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	c := &longChild{role: role, in: in, out: bufio.NewScanner(out), cmd: cmd}
	t.Cleanup(func() {
		c.in.Close() // EOF: the child stops
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s child: %v", role, err)
			}
		case <-time.After(30 * time.Second): // hang guard
			_ = cmd.Process.Kill()
			t.Errorf("%s child did not stop", role)
		}
	})
	c.addr = strings.TrimPrefix(c.line(t, longChildReady), longChildReady)
	return c
}

// line returns the child's next stdout line starting with prefix (go
// test's own lines are skipped).
func (c *longChild) line(t *testing.T, prefix string) string {
	t.Helper()
	for c.out.Scan() {
		if l := c.out.Text(); strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("%s child: no %q line: %v", c.role, prefix, c.out.Err())
	return ""
}

func (c *longChild) stats(t *testing.T) longStats {
	t.Helper()
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		t.Fatalf("%s child: %v", c.role, err)
	}
	var st longStats
	if err := json.Unmarshal([]byte(strings.TrimPrefix(c.line(t, longChildStats), longChildStats)), &st); err != nil {
		t.Fatalf("%s child stats: %v", c.role, err)
	}
	return st
}

// TestLongTenThousandConnections holds AMBIENT_LONG_CONNS (default 10,000)
// idle connections open through one outbound→HBONE→inbound ztunnel pair
// (each its own process), checks that every one echoes, reports what each
// costs each ztunnel and checks that closing them all gives goroutines,
// descriptors and memory back.
func TestLongTenThousandConnections(t *testing.T) {
	n := longEnvInt(t, "AMBIENT_LONG_CONNS", 10000)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(n + 512); lim.Cur < need { // the most any one process holds
		t.Skipf("need RLIMIT_NOFILE ≥ %d per process, have %d", need, lim.Cur)
	}
	caDir := longWriteCA(t, hbonetest.MustCA(t, "cluster.local"))
	echo := longStartChild(t, "echo")
	in := longStartChild(t, "inbound", longEnvCADir+"="+caDir)
	_, hbonePort, err := net.SplitHostPort(in.addr)
	if err != nil {
		t.Fatal(err)
	}
	out := longStartChild(t, "outbound", longEnvCADir+"="+caDir, longEnvEcho+"="+echo.addr, longEnvHBONE+"="+hbonePort)
	ztunnels := []*longChild{out, in}
	procs := []*longChild{out, in, echo}

	idle := func(what string) {
		t.Helper()
		if err := longWaitFor(30*time.Second, func() error {
			for _, c := range procs {
				if n := c.stats(t).Conns; n != 0 {
					return fmt.Errorf("%s still has %d connections", c.role, n)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Warm up with one tunneled connection, so lazily built state is in
	// the baseline; then let its HBONE connection idle out.
	longCloseAll(longOpenAll(t, 1, out.addr))
	idle("warm-up")
	time.Sleep(2 * time.Second) // > IdleTimeout
	base := map[string]longStats{}
	for _, c := range procs {
		base[c.role] = c.stats(t)
	}

	start := time.Now()
	conns := longOpenAll(t, n, out.addr)
	t.Logf("%d connections opened and echoed through the pair in %v", n, time.Since(start).Round(time.Millisecond))
	full := map[string]longStats{}
	for _, c := range procs {
		st := c.stats(t)
		full[c.role] = st
		b := base[c.role]
		t.Logf("%-8s with %d open: Go heap+stack %+.1f MiB (%.0f B/conn), RSS %+.1f MiB (%.0f B/conn), goroutines %d→%d, fds %d→%d",
			c.role, n, longMiB(st.Live, b.Live), longPerConn(st.Live, b.Live, n), longMiB(st.RSS, b.RSS), longPerConn(st.RSS, b.RSS, n),
			b.Goroutines, st.Goroutines, b.FDs, st.FDs)
	}
	for _, c := range ztunnels {
		if got := full[c.role].Conns; got != n {
			t.Errorf("%s tracks %d connections, want %d", c.role, got, n)
		}
		if per := longPerConn(full[c.role].Live, base[c.role].Live, n); per > longMaxPerConn {
			t.Errorf("%s ztunnel holds %.1f KiB of Go heap+stack per idle connection, want ≤ %d KiB", c.role, per/1024, longMaxPerConn>>10)
		}
	}
	// A second round trip on every connection, now that all are open.
	for i, c := range conns {
		if err := longEchoOnce(c, i); err != nil {
			longCloseAll(conns)
			t.Fatalf("connection %d with all open: %v", i, err)
		}
	}
	longCloseAll(conns)

	// Leak check: all closed, HBONE connections idled out.
	idle("after closing")
	for _, c := range ztunnels {
		b := base[c.role]
		var last longStats
		err := longWaitFor(30*time.Second, func() error {
			last = c.stats(t)
			if last.Goroutines > b.Goroutines+10 || last.FDs > b.FDs+10 {
				return fmt.Errorf("goroutines %d (baseline %d), fds %d (baseline %d)", last.Goroutines, b.Goroutines, last.FDs, b.FDs)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s not back to baseline 30 s after closing every connection: %v", c.role, err)
		}
		t.Logf("%-8s after closing all: goroutines %d (baseline %d), fds %d (baseline %d), Go heap+stack %+.1f MiB, RSS %+.1f MiB vs baseline",
			c.role, last.Goroutines, b.Goroutines, last.FDs, b.FDs, longMiB(last.Live, b.Live), longMiB(last.RSS, b.RSS))
		// What stays after everything closed must be a small part of what
		// n connections needed.
		if grown, used := float64(last.Live)-float64(b.Live), float64(full[c.role].Live)-float64(b.Live); grown > 0.1*used+8<<20 {
			t.Errorf("%s: Go heap+stack still %.1f MiB above baseline after closing every connection", c.role, grown/(1<<20))
		}
	}
}

func longPerConn(a, b uint64, n int) float64 { return (float64(a) - float64(b)) / float64(n) }

func longMiB(a, b uint64) float64 { return (float64(a) - float64(b)) / (1 << 20) }

// longOpenAll opens n connections to addr from longClientIP, 64 at a time;
// each sends one line and must read the same line back, then stays open.
func longOpenAll(t *testing.T, n int, addr string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr sync.Once
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			d := longDialer()
			d.Timeout = 30 * time.Second
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := d.Dial("tcp", addr)
				if err == nil {
					err = longEchoOnce(c, i)
					conns[i] = c
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("connection %d: %v", i, err) })
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		longCloseAll(conns)
		t.Fatalf("%d of %d connections did not echo", f, n)
	}
	return conns
}

// longDialer dials from longClientIP, the port chosen at connect
// (IP_BIND_ADDRESS_NO_PORT) so that 10,000 binds do not scan for ports.
func longDialer() net.Dialer {
	return net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(longClientIP, 0)),
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

// longEchoOnce sends a line naming i and requires it back.
func longEchoOnce(c net.Conn, i int) error {
	msg := fmt.Sprintf("conn-%d\n", i)
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil { // hang guard
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return c.SetDeadline(time.Time{})
}

func longCloseAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// longWaitFor polls cond until it holds or timeout passes (a generous
// "eventually", not a timing assertion).
func longWaitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
