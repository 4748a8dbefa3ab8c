//go:build e2e

package mesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/framework"
)

// pair is an enrolled client on node1 and server on node2, both echo
// servers: the test sends the client's traffic from inside its network
// namespace, so every connection is the client pod's and the test sees each
// answer whole.
type pair struct {
	f              *framework.T
	client, server *corev1.Pod
	clientNetns    string
	clientID       string // SPIFFE URIs
	serverID       string
}

func newPair(t *testing.T) *pair {
	f := framework.New(t, map[string]string{ambientLabel: "ambient"})
	f.DeployEcho(framework.EchoOptions{Name: "server", Node: "node2"})
	f.DeployEcho(framework.EchoOptions{Name: "client", Node: "node1"})
	f.WaitDeploymentReady("server-v1", 90*time.Second)
	f.WaitDeploymentReady("client-v1", 90*time.Second)
	p := &pair{f: f, client: &f.Pods("app=client")[0], server: &f.Pods("app=server")[0]}
	p.clientNetns = f.PodNetns(p.client)
	p.clientID = fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client", f.Namespace)
	p.serverID = fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/server", f.Namespace)
	return p
}

func (p *pair) addr(port int) string {
	return net.JoinHostPort(p.server.Status.PodIP, fmt.Sprint(port))
}

// tcpEcho makes one echo TCP "request" from the client pod: connect, read
// the greeting, send payload, half-close, read it back.
func (p *pair) tcpEcho(ctx context.Context, payload string) (api.TCPGreeting, error) {
	var g api.TCPGreeting
	c, err := framework.DialFromNetns(ctx, p.clientNetns, p.addr(framework.EchoTCPPort))
	if err != nil {
		return g, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return g, fmt.Errorf("read greeting: %w", err)
	}
	if err := json.Unmarshal(line, &g); err != nil {
		return g, fmt.Errorf("greeting %q: %w", line, err)
	}
	if _, err := io.WriteString(c, payload); err != nil {
		return g, fmt.Errorf("write: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return g, fmt.Errorf("half-close: %w", err)
	}
	back, err := io.ReadAll(r)
	if err != nil {
		return g, fmt.Errorf("read echo: %w", err)
	}
	if string(back) != payload {
		return g, fmt.Errorf("echo %q, want %q", back, payload)
	}
	return g, nil
}

// httpGet sends one HTTP/1.1 request with header X-Marker from the client
// pod and decodes the server's answer.
func (p *pair) httpGet(ctx context.Context, marker string) (api.HTTPResponse, error) {
	var out api.HTTPResponse
	c, err := framework.DialFromNetns(ctx, p.clientNetns, p.addr(framework.EchoHTTPPort))
	if err != nil {
		return out, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	fmt.Fprintf(c, "GET /datapath HTTP/1.1\r\nHost: server\r\nX-Marker: %s\r\nConnection: close\r\n\r\n", marker)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return out, fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("decode answer: %w", err)
	}
	if out.Headers["X-Marker"] != marker {
		return out, fmt.Errorf("server saw X-Marker %q, want %q", out.Headers["X-Marker"], marker)
	}
	return out, nil
}

// meshed counts the connections node's ztunnel opened for client → server
// over mTLS as reporter.
func (p *pair) meshed(node, reporter string) (float64, error) {
	s, err := p.f.ZtunnelMetrics(node)
	if err != nil {
		return 0, err
	}
	return framework.SumMetric(s, "istio_tcp_connections_opened_total", map[string]string{
		"reporter": reporter, "source_principal": p.clientID, "destination_principal": p.serverID,
		"connection_security_policy": "mutual_tls",
	}), nil
}

// waitMeshed waits until the client's connections reach the server through
// node2's ztunnel (capture attached, certificates issued).
func (p *pair) waitMeshed() {
	p.f.Helper()
	p.f.Eventually(60*time.Second, "client → server through both ztunnels", func() error {
		before, err := p.meshed("node2", "destination")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(p.f.Ctx, 5*time.Second)
		defer cancel()
		if _, err := p.tcpEcho(ctx, "warm-up\n"); err != nil {
			return err
		}
		after, err := p.meshed("node2", "destination")
		if err != nil {
			return err
		}
		if after <= before {
			return fmt.Errorf("node2's ztunnel did not see the connection (opened %v → %v)", before, after)
		}
		return nil
	})
}

type attempt struct {
	start, end time.Time
	err        error
}

// connectLoop makes TCP echo connections from the client to the server one
// after the other until stopped, recording each.
type connectLoop struct {
	mu       sync.Mutex
	attempts []attempt
	stop     chan struct{}
	done     chan struct{}
}

func (p *pair) startLoop() *connectLoop {
	l := &connectLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			// Fail closed: while no proxy listens, SYNs wait and are
			// retransmitted (1 s, 3 s, 7 s, 15 s): a generous timeout lets a
			// connection ride out a restart.
			ctx, cancel := context.WithTimeout(p.f.Ctx, 20*time.Second)
			a := attempt{start: time.Now()}
			_, a.err = p.tcpEcho(ctx, fmt.Sprintf("loop %d\n", i))
			a.end = time.Now()
			cancel()
			l.mu.Lock()
			l.attempts = append(l.attempts, a)
			l.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return l
}

// end stops the loop (idempotent) and returns its attempts.
func (l *connectLoop) end() []attempt {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	return l.attempts
}

// succeededSince waits until a connection started after t0 succeeded.
func (l *connectLoop) succeededSince(f *framework.T, t0 time.Time, what string) {
	f.Helper()
	f.Eventually(60*time.Second, what, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, a := range l.attempts {
			if a.start.After(t0) && a.err == nil {
				return nil
			}
		}
		return fmt.Errorf("no successful connection since %s", t0.Format(time.TimeOnly))
	})
}

// tally counts the answered and failed attempts, with a few failures.
func tally(attempts []attempt) (ok, failed int, samples []string) {
	for _, a := range attempts {
		if a.err == nil {
			ok++
			continue
		}
		failed++
		if len(samples) < 5 {
			samples = append(samples, fmt.Sprintf("%s (after %s): %v", a.start.Format("15:04:05.000"), a.end.Sub(a.start).Round(time.Millisecond), a.err))
		}
	}
	return ok, failed, samples
}

// recovered fails the test unless the last attempts all succeeded.
func recovered(t *testing.T, attempts []attempt, what string) {
	t.Helper()
	for _, a := range attempts[max(0, len(attempts)-5):] {
		if a.err != nil {
			t.Errorf("the loop did not recover after %s: a late connection (%s) failed: %v", what, a.start.Format("15:04:05.000"), a.err)
		}
	}
}

// TestZtunnelRestartNoBypass: while the client connects to the server in a
// loop, node1's ztunnel pod is deleted (the DaemonSet replaces it) and then
// its proxy process is killed with SIGKILL (the node agent restarts it).
// Every connection that got an answer came through node2's ztunnel as mTLS
// from the client's identity (a connection sent around node1's ztunnel
// would arrive in plaintext on node2, without the client's principal), and
// the loop recovers by itself. Then the server side's ztunnel (node2) is
// replaced while the loop runs, and the loop recovers again.
func TestZtunnelRestartNoBypass(t *testing.T) {
	p := newPair(t)
	f := p.f
	p.waitMeshed()
	before, err := p.meshed("node2", "destination")
	if err != nil {
		t.Fatal(err)
	}

	loop := p.startLoop()
	defer loop.end()
	loop.succeededSince(f, time.Now(), "the loop runs")

	t0 := time.Now()
	uid := f.DeleteZtunnelPod("node1")
	zt := f.WaitZtunnelReady("node1", uid, 90*time.Second)
	t.Logf("node1's ztunnel pod deleted at %s, replaced in %s", t0.Format("15:04:05.000"), time.Since(t0).Round(time.Millisecond))
	loop.succeededSince(f, t0, "the loop recovers after the ztunnel pod is replaced")

	time.Sleep(time.Second)
	t1 := time.Now()
	pid := f.KillZtunnelProxy("node1")
	f.Eventually(60*time.Second, "the node agent restarts the killed proxy", func() error {
		if got := f.ZtunnelProxyPIDOrZero(zt); got == 0 || got == pid {
			return fmt.Errorf("no new proxy process yet (killed %d)", pid)
		}
		return nil
	})
	t.Logf("node1's proxy process %d killed at %s, restarted in %s", pid, t1.Format("15:04:05.000"), time.Since(t1).Round(time.Millisecond))
	loop.succeededSince(f, t1, "the loop recovers after the proxy is killed")
	time.Sleep(2 * time.Second)
	attempts := loop.end()

	after, err := p.meshed("node2", "destination")
	if err != nil {
		t.Fatal(err)
	}
	ok, failed, samples := tally(attempts)
	t.Logf("client side restarts: %d connections answered, %d failed %v; node2's ztunnel opened %v meshed connections for them", ok, failed, samples, after-before)
	if got := int(after - before); got < ok {
		t.Errorf("%d connections were answered but node2's ztunnel opened only %d mTLS connections from %s: %d bypassed the mesh", ok, got, p.clientID, ok-got)
	}
	recovered(t, attempts, "node1's ztunnel restarts")

	// The server side: node2's ztunnel pod is replaced.
	loop = p.startLoop()
	defer loop.end()
	loop.succeededSince(f, time.Now(), "the loop runs again")
	t2 := time.Now()
	uid = f.DeleteZtunnelPod("node2")
	f.WaitZtunnelReady("node2", uid, 90*time.Second)
	t.Logf("node2's ztunnel pod deleted at %s, replaced in %s", t2.Format("15:04:05.000"), time.Since(t2).Round(time.Millisecond))
	loop.succeededSince(f, t2, "the loop recovers after the server side's ztunnel is replaced")
	time.Sleep(2 * time.Second)
	attempts = loop.end()
	ok, failed, samples = tally(attempts)
	t.Logf("server side restart: %d connections answered, %d failed %v", ok, failed, samples)
	recovered(t, attempts, "node2's ztunnel restart")
}

// TestUnderlayCarriesOnlyTLS captures the underlay bridge while the client
// sends a unique marker to the server on another node: the marker never
// crosses it, the node-to-node TCP carrying the data is on port 15008 and
// every such flow starts with a TLS record; the server sees the client
// pod's own IP (source preserved); both ztunnels' metrics and access logs
// name both identities. Un-enrolled, the marker does cross in plaintext,
// so the check can fail.
func TestUnderlayCarriesOnlyTLS(t *testing.T) {
	p := newPair(t)
	f := p.f
	bridge := f.UnderlayBridge()
	if bridge == "" {
		t.Skip("no underlay bridge to capture on (not the local cluster)")
	}
	clientIP := netip.MustParseAddr(p.client.Status.PodIP)
	serverIP := netip.MustParseAddr(p.server.Status.PodIP)
	ours := func(src, dst netip.AddrPort) bool {
		for _, a := range []netip.Addr{src.Addr(), dst.Addr()} {
			if a == clientIP || a == serverIP {
				return true
			}
		}
		return false
	}
	// Capture from before the first meshed connection, so the HBONE
	// connection's handshake is seen.
	capture, err := framework.StartCapture(bridge, ours)
	if err != nil {
		t.Fatal(err)
	}
	p.waitMeshed()
	warm := capture.Len()

	marker := newMarker(t)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(f.Ctx, 10*time.Second)
		r, err := p.httpGet(ctx, marker)
		cancel()
		if err != nil {
			t.Fatalf("meshed request %d: %v", i, err)
		}
		if r.SourceIP != clientIP.String() {
			t.Errorf("the server saw the connection from %s, want the client pod's %s (source IP preserved across nodes)", r.SourceIP, clientIP)
		}
	}
	segs, err := capture.Stop()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	checkOnlyTLS(t, segs, warm, marker, serverIP)

	// Metrics and access logs of both ztunnels name both identities.
	for _, rep := range []struct{ node, reporter, direction string }{
		{"node1", "source", "outbound"}, {"node2", "destination", "inbound"},
	} {
		n, err := p.meshed(rep.node, rep.reporter)
		if err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			t.Errorf("%s's ztunnel: istio_tcp_connections_opened_total{reporter=%q, source_principal=%q, destination_principal=%q} = %v, want ≥ 3",
				rep.node, rep.reporter, p.clientID, p.serverID, n)
		}
		f.Eventually(10*time.Second, rep.node+"'s access log names both identities", func() error {
			return accessLogged(f.PodLog(f.ZtunnelPod(rep.node), "proxy"), rep.direction, p.clientID, p.serverID,
				netip.AddrPortFrom(serverIP, framework.EchoHTTPPort))
		})
	}

	// Un-enrolled: the same request crosses the underlay in plaintext.
	unpatch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, ambientLabel)
	if _, err := f.Client.CoreV1().Namespaces().Patch(f.Ctx, f.Namespace, types.MergePatchType, []byte(unpatch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Eventually(60*time.Second, "un-enrolled, the marker crosses the underlay in plaintext", func() error {
		marker := newMarker(t)
		capture, err := framework.StartCapture(bridge, ours)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(f.Ctx, 5*time.Second)
		_, reqErr := p.httpGet(ctx, marker)
		cancel()
		time.Sleep(200 * time.Millisecond)
		segs, err := capture.Stop()
		if err != nil {
			return err
		}
		if reqErr != nil {
			return reqErr
		}
		for _, s := range segs {
			if bytes.Contains(s.Payload, []byte(marker)) && s.Dst == netip.AddrPortFrom(serverIP, framework.EchoHTTPPort) {
				return nil
			}
		}
		return fmt.Errorf("marker not seen in %d segments", len(segs))
	})
}

func newMarker(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "amb-marker-" + hex.EncodeToString(b)
}

// checkOnlyTLS: the marker is in no segment (nor split over a flow's
// segments); after the warm-up (segs[warm:]) every segment carrying data
// is on port 15008; every flow to the server's 15008 whose SYN was captured
// starts, both ways, with a TLS handshake record; and there is one.
func checkOnlyTLS(t *testing.T, segs []framework.Segment, warm int, marker string, serverIP netip.Addr) {
	t.Helper()
	type dir struct{ src, dst netip.AddrPort }
	streams := map[dir][]byte{}
	for _, s := range segs {
		streams[dir{s.Src, s.Dst}] = append(streams[dir{s.Src, s.Dst}], s.Payload...)
	}
	for d, b := range streams {
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("the marker crossed the underlay in plaintext: %s → %s", d.src, d.dst)
		}
	}
	for _, s := range segs[warm:] {
		if len(s.Payload) > 0 && s.Src.Port() != 15008 && s.Dst.Port() != 15008 {
			t.Errorf("data between nodes outside HBONE: %s → %s (%d bytes)", s.Src, s.Dst, len(s.Payload))
		}
	}
	hbone := netip.AddrPortFrom(serverIP, 15008)
	synSeen := map[dir]bool{}
	first := map[dir][]byte{}
	for _, s := range segs {
		if s.SYN && s.Dst == hbone {
			synSeen[dir{s.Src, s.Dst}] = true
		}
		d := dir{s.Src, s.Dst}
		if len(s.Payload) > 0 && first[d] == nil {
			first[d] = s.Payload
		}
	}
	if len(synSeen) == 0 {
		t.Fatalf("no HBONE connection to %s captured (%d segments): the capture saw nothing of the meshed traffic", hbone, len(segs))
	}
	t.Logf("captured %d segments; %d HBONE connections to %s from their SYN", len(segs), len(synSeen), hbone)
	isHandshake := func(b []byte) bool { return len(b) >= 5 && b[0] == 0x16 && b[1] == 0x03 }
	for d := range synSeen {
		for _, way := range []dir{d, {d.dst, d.src}} {
			if !isHandshake(first[way]) {
				t.Errorf("HBONE flow %s → %s does not start with a TLS handshake record: % x", way.src, way.dst, first[way][:min(8, len(first[way]))])
			}
		}
	}
}

// accessLogged finds a "connection complete" line of direction naming both
// identities and the destination.
func accessLogged(log []byte, direction, srcID, dstID string, dst netip.AddrPort) error {
	n := 0
	for _, line := range bytes.Split(log, []byte("\n")) {
		_, js, ok := strings.Cut(string(line), "connection complete\t")
		if !ok {
			continue
		}
		n++
		var e map[string]any
		if json.Unmarshal([]byte(js), &e) != nil {
			continue
		}
		if e["direction"] == direction && e["src.identity"] == srcID && e["dst.identity"] == dstID && e["dst.addr"] == dst.String() {
			return nil
		}
	}
	return fmt.Errorf("no %s access log line from %s to %s (%s) among %d lines", direction, srcID, dstID, dst, n)
}
