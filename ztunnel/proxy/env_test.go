package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// The test mesh, all on loopback; node A runs the client, node B the
// servers. Proxy A plays node A's ztunnel (outbound), proxy B node B's
// (HBONE inbound on <pod ip>:hbonePort, plaintext inbound).
//
//	client      127.0.0.2  A  ns a, sa client
//	server      127.0.0.3  B  ns b, sa server, service echo (VIP 127.0.0.100:80 → echoPort)
//	server2     127.0.0.4  B  ns b, sa server, service echo
//	guarded     127.0.0.5  B  ns b, sa guarded, waypoint 127.0.0.6 (unknown to node A)
//	waypoint    127.0.0.6  B  ns b, sa waypoint (not running)
//	outsider    127.0.0.7     not in the mesh (plaintext client)
//	plain       127.0.0.9     not in the mesh (passthrough target)
var (
	clientIP   = netip.MustParseAddr("127.0.0.2")
	serverIP   = netip.MustParseAddr("127.0.0.3")
	server2IP  = netip.MustParseAddr("127.0.0.4")
	guardedIP  = netip.MustParseAddr("127.0.0.5")
	waypointIP = netip.MustParseAddr("127.0.0.6")
	outsideIP  = netip.MustParseAddr("127.0.0.7")
	unknownIP  = netip.MustParseAddr("127.0.0.8")
	plainIP    = netip.MustParseAddr("127.0.0.9")
	vip        = netip.MustParseAddr("127.0.0.100")
)

const trustDomain = "cluster.local"

// certs is the test CertSource: one certificate per identity, client and
// server alike.
type certs struct{ *hbonetest.Certs }

func (c certs) ServerCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.ClientCertificate(ctx, id)
}

// logs captures a proxy's log and signals each access log line.
type logs struct {
	*observer.ObservedLogs
	lines chan observer.LoggedEntry
}

type signalCore struct {
	zapcore.Core
	obs   *observer.ObservedLogs
	lines chan observer.LoggedEntry
}

func (c *signalCore) With(f []zapcore.Field) zapcore.Core {
	return &signalCore{Core: c.Core.With(f), obs: c.obs, lines: c.lines}
}

func (c *signalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *signalCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	err := c.Core.Write(e, f)
	if e.Message == accesslog.Message {
		all := c.obs.All()
		c.lines <- all[len(all)-1]
	}
	return err
}

func newLogs() (*zap.Logger, *logs) {
	core, obs := observer.New(zap.DebugLevel)
	l := &logs{ObservedLogs: obs, lines: make(chan observer.LoggedEntry, 1000)}
	return zap.New(&signalCore{Core: core, obs: obs, lines: l.lines}), l
}

// next returns the next access log line.
func (l *logs) next(t testing.TB) map[string]any {
	t.Helper()
	select {
	case e := <-l.lines:
		return e.ContextMap()
	case <-time.After(10 * time.Second): // hang guard, not a timing assertion
		t.Fatal("no access log line")
		return nil
	}
}

type node struct {
	store   *state.Store
	reg     *prometheus.Registry
	logs    *logs
	proxy   *proxy.Proxy
	cancel  context.CancelFunc
	stopped chan error
}

type env struct {
	ca                   *hbonetest.CA
	certs                *hbonetest.Certs // of every identity of the mesh
	clientID, serverID   spiffe.Identity
	otherID, guardedID   spiffe.Identity
	hbonePort, echoPort  uint16
	greetPort, plainPort uint16
	sinkPort, abortPort  uint16
	sinkDone             chan int64 // bytes the sink read
	a, b                 *node
	capture              map[uint16]netip.AddrPort // capture listener port → original dst
	outboundLn, plainLn  net.Listener
	echoSeen             chan netip.AddrPort // remote addresses the echo servers saw
	greetDone            chan int64          // bytes the greeter read
	echoErr              chan error          // how echo connections ended (nil: EOF)
	echoLns              []net.Listener
	hboneLns             []net.Listener // node B's HBONE listeners: server, server2, guarded, waypoint
	wg                   sync.WaitGroup
}

type envOpts struct {
	drain time.Duration
	// quiet drops logs (benchmarks: no observer, no access log signal).
	quiet bool
}

func addrs(ips ...netip.Addr) [][]byte {
	var out [][]byte
	for _, ip := range ips {
		out = append(out, ip.AsSlice())
	}
	return out
}

func workload(uid, ns, sa, node string, ip netip.Addr, opts ...func(*workloadapi.Workload)) *workloadapi.Address {
	w := &workloadapi.Workload{Uid: uid, Name: uid, Namespace: ns, ServiceAccount: sa, Node: node,
		Addresses: addrs(ip), TunnelProtocol: workloadapi.TunnelProtocol_HBONE, CanonicalName: uid, WorkloadName: uid}
	for _, o := range opts {
		o(w)
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

func echoMember(port uint16) func(*workloadapi.Workload) {
	return func(w *workloadapi.Workload) {
		w.Services = map[string]*workloadapi.PortList{"b/echo.b.svc.cluster.local": {Ports: []*workloadapi.Port{{ServicePort: 80, TargetPort: uint32(port)}}}}
	}
}

// addresses is the mesh; withWaypoint binds guarded to its waypoint (only
// node B knows).
func (e *env) addresses(withWaypoint bool) map[string]*workloadapi.Address {
	m := map[string]*workloadapi.Address{
		"client":   workload("client", "a", "client", "A", clientIP),
		"server":   workload("server", "b", "server", "B", serverIP, echoMember(e.echoPort)),
		"server2":  workload("server2", "b", "server", "B", server2IP, echoMember(e.echoPort)),
		"waypoint": workload("waypoint", "b", "waypoint", "B", waypointIP),
		"guarded": workload("guarded", "b", "guarded", "B", guardedIP, func(w *workloadapi.Workload) {
			if withWaypoint {
				w.Waypoint = &workloadapi.GatewayAddress{HboneMtlsPort: uint32(e.hbonePort),
					Destination: &workloadapi.GatewayAddress_Address{Address: &workloadapi.NetworkAddress{Address: waypointIP.AsSlice()}}}
			}
		}),
		"b/echo.b.svc.cluster.local": {Type: &workloadapi.Address_Service{Service: &workloadapi.Service{
			Name: "echo", Namespace: "b", Hostname: "echo.b.svc.cluster.local",
			Addresses: []*workloadapi.NetworkAddress{{Address: vip.AsSlice()}},
			Ports:     []*workloadapi.Port{{ServicePort: 80, TargetPort: uint32(e.echoPort)}},
		}}},
	}
	return m
}

// listenSame listens on port (0: any) at every ip, so all pods share it.
func listenSame(t testing.TB, ips ...netip.Addr) ([]net.Listener, uint16) {
	t.Helper()
	for range 20 {
		var lns []net.Listener
		var port uint16
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
			port = uint16(ln.Addr().(*net.TCPAddr).Port)
		}
		if ok {
			return lns, port
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Fatal("no common free port")
	return nil, 0
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{
		ca:        hbonetest.MustCA(t, trustDomain),
		capture:   map[uint16]netip.AddrPort{},
		echoSeen:  make(chan netip.AddrPort, 1000),
		greetDone: make(chan int64, 100),
		sinkDone:  make(chan int64, 100),
		echoErr:   make(chan error, 1000),
	}
	e.clientID = e.ca.Identity("a", "client")
	e.serverID = e.ca.Identity("b", "server")
	e.otherID = e.ca.Identity("a", "other")
	e.guardedID = e.ca.Identity("b", "guarded")
	cs := &hbonetest.Certs{}
	e.certs = cs
	for _, id := range []spiffe.Identity{e.clientID, e.serverID, e.otherID, e.guardedID, e.ca.Identity("b", "waypoint")} {
		cs.Set(id, e.ca.MustIssue(t, id, time.Hour))
	}

	// Pods: echo on server, server2, guarded; a greeter on server; a plain
	// (non-mesh) echo.
	echoLns, echoPort := listenSame(t, serverIP, server2IP, guardedIP)
	e.echoPort = echoPort
	greetLns, greetPort := listenSame(t, serverIP)
	e.greetPort = greetPort
	plainLns, plainPort := listenSame(t, plainIP)
	e.plainPort = plainPort
	for _, ln := range append(echoLns, plainLns...) {
		e.serve(ln, e.echo)
	}
	e.serve(greetLns[0], e.greet)
	sinkLns, sinkPort := listenSame(t, serverIP)
	e.sinkPort = sinkPort
	e.serve(sinkLns[0], e.sink)
	abortLns, abortPort := listenSame(t, serverIP)
	e.abortPort = abortPort
	e.serve(abortLns[0], e.abort)
	e.echoLns = append(append(append(append(echoLns, greetLns...), plainLns...), sinkLns...), abortLns...)

	hboneLns, hbonePort := listenSame(t, serverIP, server2IP, guardedIP, waypointIP)
	e.hbonePort, e.hboneLns = hbonePort, hboneLns

	// Capture: one listener per original destination the tests use.
	outLns := []net.Listener{}
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(serverIP, echoPort), netip.AddrPortFrom(serverIP, greetPort),
		netip.AddrPortFrom(vip, 80), netip.AddrPortFrom(guardedIP, echoPort),
		netip.AddrPortFrom(plainIP, plainPort), netip.AddrPortFrom(serverIP, sinkPort),
		netip.AddrPortFrom(serverIP, abortPort),
	} {
		outLns = append(outLns, e.captureFor(t, dst))
	}
	e.outboundLn = newMultiListener(outLns...)
	e.plainLn = e.captureFor(t, netip.AddrPortFrom(serverIP, echoPort))

	origDst := func(c net.Conn) (netip.AddrPort, error) {
		p := uint16(c.LocalAddr().(*net.TCPAddr).Port)
		dst, ok := e.capture[p]
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("no capture mapping for port %d", p)
		}
		return dst, nil
	}
	bundle := e.ca.Bundle
	mk := func(name string, withWaypoint bool, cfg proxy.Config) *node {
		n := &node{store: state.NewStore(), reg: prometheus.NewRegistry(), stopped: make(chan error, 1)}
		if err := n.store.ReplaceAddresses(e.addresses(withWaypoint)); err != nil {
			t.Fatal(err)
		}
		l := zap.NewNop()
		if !o.quiet {
			l, n.logs = newLogs()
		}
		cfg.Store, cfg.Certs, cfg.Bundle, cfg.Logger = n.store, certs{cs}, bundle, l
		cfg.Metrics = metrics.New(n.reg)
		cfg.Local = route.Local{Node: name}
		cfg.OriginalDst = origDst
		cfg.RouteOptions = route.Options{HBONEPort: hbonePort, Rand: rand.New(rand.NewPCG(1, 2))}
		cfg.DrainTimeout = o.drain
		p, err := proxy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.proxy = p
		var ctx context.Context
		ctx, n.cancel = context.WithCancel(context.Background())
		go func() { n.stopped <- p.Run(ctx) }()
		return n
	}
	e.a = mk("A", false, proxy.Config{Outbound: e.outboundLn})
	e.b = mk("B", true, proxy.Config{Inbound: newMultiListener(hboneLns...), InboundPlaintext: e.plainLn})
	t.Cleanup(func() {
		e.stop(t, e.a)
		e.stop(t, e.b)
		for _, ln := range e.echoLns {
			ln.Close()
		}
		e.wg.Wait()
	})
	return e
}

func (e *env) stop(t testing.TB, n *node) {
	n.cancel()
	select {
	case err := <-n.stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		n.stopped <- nil // later stops return at once
	case <-time.After(30 * time.Second): // hang guard
		t.Error("proxy did not stop")
	}
}

func (e *env) captureFor(t testing.TB, dst netip.AddrPort) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.capture[uint16(ln.Addr().(*net.TCPAddr).Port)] = dst
	return ln
}

// captureAddr is the listener a connection to dst is "captured" to.
func (e *env) captureAddr(t testing.TB, ln net.Listener, dst netip.AddrPort) string {
	t.Helper()
	var lns []net.Listener
	if m, ok := ln.(*multiListener); ok {
		lns = m.lns
	} else {
		lns = []net.Listener{ln}
	}
	for _, l := range lns {
		if e.capture[uint16(l.Addr().(*net.TCPAddr).Port)] == dst {
			return l.Addr().String()
		}
	}
	t.Fatalf("no capture listener for %s", dst)
	return ""
}

// dial connects from src to dst as a pod would, through ln (capture).
func (e *env) dial(t testing.TB, ln net.Listener, src netip.Addr, dst netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := e.tryDial(t, ln, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) tryDial(t testing.TB, ln net.Listener, src netip.Addr, dst netip.AddrPort) (*net.TCPConn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.Dial("tcp", e.captureAddr(t, ln, dst))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

// expectRefused connects like dial and requires the proxy to reset the
// connection (the reset may already fail the connect).
func (e *env) expectRefused(t testing.TB, ln net.Listener, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	c, err := e.tryDial(t, ln, src, dst)
	if err == nil {
		// Were the connection (wrongly) proxied, the echo would answer
		// and end with EOF instead of the test hanging.
		if _, err = c.Write([]byte("ping")); err == nil {
			_ = c.CloseWrite()
			_, err = io.ReadAll(c)
		} else if errors.Is(err, syscall.EPIPE) {
			err = syscall.ECONNRESET // the reset came before the write
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("error = %v, want connection reset", err)
	}
}

func (e *env) serve(ln net.Listener, h func(*net.TCPConn)) {
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Go(func() { defer c.Close(); h(c.(*net.TCPConn)) })
		}
	})
}

// echo returns what it reads, then half-closes.
func (e *env) echo(c *net.TCPConn) {
	e.echoSeen <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
	_, err := io.Copy(c, c)
	if err == nil {
		c.CloseWrite()
		_, err = io.Copy(io.Discard, c)
	}
	select {
	case e.echoErr <- err:
	default:
	}
}

// sink reads everything and reports the count.
func (e *env) sink(c *net.TCPConn) {
	n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 64<<10))
	e.sinkDone <- n
}

// abortLen is how many bytes abort reads before it resets.
const abortLen = 7

// abort reads abortLen bytes, then resets the connection (RST, not FIN).
func (e *env) abort(c *net.TCPConn) {
	if _, err := io.ReadFull(c, make([]byte, abortLen)); err == nil {
		c.SetLinger(0)
	}
}

// greet half-closes first after a greeting, then counts what it reads.
func (e *env) greet(c *net.TCPConn) {
	c.Write([]byte("hello"))
	c.CloseWrite()
	n, _ := io.Copy(io.Discard, c)
	e.greetDone <- n
}

// roundTrip sends msg, half-closes and returns everything read until EOF.
func roundTrip(c *net.TCPConn, msg []byte) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; err == nil && werr != nil {
		err = werr
	}
	return got, err
}

// multiListener merges listeners (one per pod IP, or per captured
// destination) into one.
type multiListener struct {
	lns  []net.Listener
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newMultiListener(lns ...net.Listener) *multiListener {
	m := &multiListener{lns: lns, ch: make(chan net.Conn), done: make(chan struct{})}
	for _, ln := range lns {
		m.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case m.ch <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		})
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.ch:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.lns {
			ln.Close()
		}
		m.wg.Wait()
	})
	return nil
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }

// exact is a StringMatch for an exact value.
func exact(s string) *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Exact{Exact: s}}
}

func principal(id spiffe.Identity) string {
	return id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// setPolicies replaces node n's policies.
func setPolicies(t testing.TB, n *node, ps ...*security.Authorization) {
	t.Helper()
	all := map[string]*security.Authorization{}
	for _, p := range ps {
		all[p.Namespace+"/"+p.Name] = p
	}
	if err := n.store.ReplaceAuthorizations(all); err != nil {
		t.Fatal(err)
	}
}

// counter sums the samples of metric name whose labels include want.
func counter(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
