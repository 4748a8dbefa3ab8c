package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/inbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/outbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/passthrough"
	"github.com/ambient-mesh/ambient/ztunnel/rbac"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEchoHalfCloseAndTelemetry(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := netip.AddrPortFrom(serverIP, e.echoPort)
	c := e.dial(t, e.outboundLn, clientIP, dst)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	got, err := roundTrip(c, msg)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes back, err %v", len(got), err)
	}
	// The pod saw a connection from its ztunnel, not from the client pod.
	if seen := <-e.echoSeen; seen.Addr() == clientIP {
		t.Errorf("server saw %s: the connection did not come through ztunnel", seen)
	}

	n := float64(len(msg))
	out := e.a.logs.next(t)
	in := e.b.logs.next(t)
	for _, tc := range []struct {
		name string
		line map[string]any
		want map[string]any
	}{
		{"outbound", out, map[string]any{"direction": "outbound", "src.workload": "client", "dst.workload": "server",
			"src.identity": e.clientID.String(), "dst.identity": e.serverID.String(), "dst.addr": dst.String(),
			"dst.hbone_addr": netip.AddrPortFrom(serverIP, e.hbonePort).String(),
			"bytes_sent":     int64(n), "bytes_recv": int64(n)}},
		{"inbound", in, map[string]any{"direction": "inbound", "src.workload": "client", "dst.workload": "server",
			"src.identity": e.clientID.String(), "dst.identity": e.serverID.String(), "dst.addr": dst.String(),
			"bytes_sent": int64(n), "bytes_recv": int64(n)}},
	} {
		for k, v := range tc.want {
			if tc.line[k] != v {
				t.Errorf("%s access log %s = %v, want %v (line %v)", tc.name, k, tc.line[k], v, tc.line)
			}
		}
		if _, ok := tc.line["error"]; ok {
			t.Errorf("%s access log has an error: %v", tc.name, tc.line)
		}
	}

	for _, tc := range []struct {
		node     *node
		reporter string
	}{{e.a, "source"}, {e.b, "destination"}} {
		labels := map[string]string{"reporter": tc.reporter, "source_principal": e.clientID.String(),
			"destination_principal": e.serverID.String(), "source_workload": "client", "destination_workload": "server",
			"connection_security_policy": "mutual_tls"}
		for name, want := range map[string]float64{
			"istio_tcp_connections_opened_total": 1, "istio_tcp_connections_closed_total": 1,
			"istio_tcp_received_bytes_total": n, "istio_tcp_sent_bytes_total": n,
		} {
			if got := counter(t, tc.node.reg, name, labels); got != want {
				t.Errorf("%s %s = %v, want %v", tc.reporter, name, got, want)
			}
		}
	}
}

func TestServerHalfClosesFirst(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.greetPort))
	// The server's FIN reaches the client while the client keeps sending.
	buf := make([]byte, 16)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "hello" {
		t.Fatalf("greeting = %q", got)
	}
	msg := bytes.Repeat([]byte("x"), 300_000)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write after the server's half-close: %v", err)
	}
	c.CloseWrite()
	if n := <-e.greetDone; n != int64(len(msg)) {
		t.Fatalf("server read %d bytes, want %d", n, len(msg))
	}
}

func TestPolicy(t *testing.T) {
	e := newEnv(t, envOpts{})
	allowFrom := func(id string) *security.Authorization {
		return &security.Authorization{Name: "allow", Namespace: "b", Scope: security.Scope_NAMESPACE, Action: security.Action_ALLOW,
			Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{Principals: []*security.StringMatch{exact(id)}}}}}}}}
	}
	denyPort := &security.Authorization{Name: "deny", Namespace: "b", Scope: security.Scope_NAMESPACE, Action: security.Action_DENY,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{DestinationPorts: []uint32{uint32(e.echoPort)}}}}}}}}
	tests := []struct {
		name     string
		policies []*security.Authorization
		allowed  bool
	}{
		{"no policy", nil, true},
		{"allow client principal", []*security.Authorization{allowFrom(principal(e.clientID))}, true},
		{"allow another principal", []*security.Authorization{allowFrom(principal(e.otherID))}, false},
		{"deny port", []*security.Authorization{denyPort}, false},
		{"deny port wins over allow", []*security.Authorization{allowFrom(principal(e.clientID)), denyPort}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setPolicies(t, e.b, tt.policies...)
			dst := netip.AddrPortFrom(serverIP, e.echoPort)
			if tt.allowed {
				c := e.dial(t, e.outboundLn, clientIP, dst)
				got, err := roundTrip(c, []byte("ping"))
				if err != nil || string(got) != "ping" {
					t.Fatalf("got %q, %v", got, err)
				}
				<-e.echoSeen
			} else {
				e.expectRefused(t, e.outboundLn, clientIP, dst)
			}
			out, in := e.a.logs.next(t), e.b.logs.next(t)
			_, outErr := out["error"]
			_, inErr := in["error"]
			if outErr == tt.allowed || inErr == tt.allowed {
				t.Errorf("error fields: outbound %v inbound %v, allowed %v", out, in, tt.allowed)
			}
			if !tt.allowed && in["reason"] == nil {
				t.Errorf("inbound refusal without a reason: %v", in)
			}
			if !tt.allowed && !strings.Contains(out["error"].(string), "401") {
				t.Errorf("outbound error does not name the 401: %v", out["error"])
			}
		})
	}
}

func TestPlaintextInbound(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := netip.AddrPortFrom(serverIP, e.echoPort)
	t.Run("permissive", func(t *testing.T) {
		setPolicies(t, e.b)
		c := e.dial(t, e.plainLn, outsideIP, dst)
		got, err := roundTrip(c, []byte("plain"))
		if err != nil || string(got) != "plain" {
			t.Fatalf("got %q, %v", got, err)
		}
		<-e.echoSeen
		line := e.b.logs.next(t)
		if line["direction"] != "inbound_plaintext" || line["dst.workload"] != "server" || line["bytes_recv"] != int64(5) {
			t.Errorf("access log = %v", line)
		}
		if _, ok := line["src.identity"]; ok {
			t.Errorf("plaintext connection logged with an identity: %v", line)
		}
	})
	t.Run("strict", func(t *testing.T) {
		setPolicies(t, e.b, rbac.StrictMTLS("b", "strict", security.Scope_NAMESPACE))
		e.expectRefused(t, e.plainLn, outsideIP, dst)
		if line := e.b.logs.next(t); line["reason"] != passthrough.ReasonStrict {
			t.Errorf("access log = %v", line)
		}
		// STRICT does not affect mTLS traffic.
		c := e.dial(t, e.outboundLn, clientIP, dst)
		if got, err := roundTrip(c, []byte("mtls")); err != nil || string(got) != "mtls" {
			t.Fatalf("mTLS under STRICT: %q, %v", got, err)
		}
	})
}

func TestPassthroughUnknownDestination(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(plainIP, e.plainPort))
	got, err := roundTrip(c, []byte("outside"))
	if err != nil || string(got) != "outside" {
		t.Fatalf("got %q, %v", got, err)
	}
	if seen := <-e.echoSeen; seen.Addr() == clientIP {
		t.Errorf("plain server saw the client directly: %s", seen)
	}
	line := e.a.logs.next(t)
	if _, ok := line["dst.identity"]; ok || line["bytes_sent"] != int64(7) {
		t.Errorf("access log = %v", line)
	}
	if got := counter(t, e.a.reg, "istio_tcp_connections_opened_total", map[string]string{"connection_security_policy": "unknown"}); got != 1 {
		t.Errorf("passthrough connections opened = %v", got)
	}
}

func TestServiceVIPReachesEveryEndpoint(t *testing.T) {
	e := newEnv(t, envOpts{})
	seen := map[netip.Addr]int{}
	for range 16 {
		c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(vip, 80))
		if got, err := roundTrip(c, []byte("svc")); err != nil || string(got) != "svc" {
			t.Fatalf("got %q, %v", got, err)
		}
		c.Close()
		e.b.logs.next(t)
		line := e.a.logs.next(t)
		if line["dst.service"] != "echo.b.svc.cluster.local" {
			t.Errorf("access log = %v", line)
		}
		seen[netip.MustParseAddrPort(line["dst.hbone_addr"].(string)).Addr()]++
		<-e.echoSeen
	}
	if seen[serverIP] == 0 || seen[server2IP] == 0 || len(seen) != 2 {
		t.Fatalf("endpoints reached: %v", seen)
	}
	if got := counter(t, e.a.reg, "istio_tcp_connections_opened_total", map[string]string{"destination_service": "echo.b.svc.cluster.local"}); got != 16 {
		t.Errorf("service connections = %v", got)
	}
}

// TestServiceVIPRetriesUnreachableEndpoint: one endpoint of the service
// cannot be reached (its HBONE listener is gone, as a replica that just
// died); every connection still succeeds, on the other endpoint, because
// nothing of the client's was sent before the failed attempt.
func TestServiceVIPRetriesUnreachableEndpoint(t *testing.T) {
	e := newEnv(t, envOpts{})
	if err := e.hboneLns[1].Close(); err != nil { // server2
		t.Fatal(err)
	}
	const n = 16
	for range n {
		c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(vip, 80))
		if got, err := roundTrip(c, []byte("svc")); err != nil || string(got) != "svc" {
			t.Fatalf("got %q, %v", got, err)
		}
		c.Close()
		e.b.logs.next(t)
		line := e.a.logs.next(t)
		if got := netip.MustParseAddrPort(line["dst.hbone_addr"].(string)).Addr(); got != serverIP {
			t.Errorf("connection went to %s, want the reachable %s: %v", got, serverIP, line)
		}
		<-e.echoSeen
	}
	retries := counter(t, e.a.reg, "ztunnel_connect_retries_total", nil)
	if retries == 0 || retries >= n {
		t.Errorf("connect retries = %v, want some (the random pick lands on server2 about half the time) and < %d", retries, n)
	}
}

func TestWaypointBypassRefused(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.expectRefused(t, e.outboundLn, clientIP, netip.AddrPortFrom(guardedIP, e.echoPort))
	if line := e.b.logs.next(t); line["reason"] != inbound.ReasonBypass {
		t.Errorf("inbound access log = %v", line)
	}
	if line := e.a.logs.next(t); line["reason"] != outbound.ReasonDialFailed {
		t.Errorf("outbound access log = %v", line)
	}
}

func TestUnknownSourceReset(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.expectRefused(t, e.outboundLn, unknownIP, netip.AddrPortFrom(serverIP, e.echoPort))
	line := e.a.logs.next(t)
	if line["reason"] != outbound.ReasonUnknownSource || !strings.HasPrefix(line["src.addr"].(string), unknownIP.String()+":") {
		t.Errorf("access log = %v", line)
	}
}

func TestGracefulDrain(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := netip.AddrPortFrom(serverIP, e.echoPort)
	c := e.dial(t, e.outboundLn, clientIP, dst)
	if _, err := c.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}

	conns := e.a.proxy.Connections()
	if len(conns) != 1 || conns[0].SrcIdentity != e.clientID.String() || conns[0].DstIdentity != e.serverID.String() ||
		conns[0].Received != 6 || conns[0].Sent > 6 || conns[0].Dst != dst {
		// (Sent is counted once the write to the client returns, which
		// may be after the client read it.)
		t.Fatalf("connections = %+v", conns)
	}
	if _, err := json.Marshal(conns); err != nil {
		t.Fatal(err)
	}
	if in := e.b.proxy.Connections(); len(in) != 1 || in[0].Direction != "inbound" {
		t.Fatalf("inbound connections = %+v", in)
	}

	e.a.cancel()
	e.b.cancel()
	// No new connections once draining…
	captured := e.captureAddr(t, e.outboundLn, dst)
	for {
		nc, err := net.Dial("tcp", captured)
		if err != nil {
			break
		}
		// (the listener may still be closing: a conn accepted by the
		// kernel is dropped, never proxied)
		nc.Close()
	}
	// …but the open one keeps working until it closes.
	got, err := roundTrip(c, []byte("after"))
	if err != nil || string(got) != "after" {
		t.Fatalf("open connection during drain: %q, %v", got, err)
	}
	<-e.echoSeen
	for _, n := range []*node{e.a, e.b} {
		if err := <-n.stopped; err != nil {
			t.Fatal(err)
		}
		n.stopped <- nil
	}
}

func TestDrainDeadlineClosesConnections(t *testing.T) {
	e := newEnv(t, envOpts{drain: 1}) // 1 ns
	c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.echoPort))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	e.a.cancel()
	if err := <-e.a.stopped; err != nil {
		t.Fatal(err)
	}
	e.a.stopped <- nil
	// The idle connection was closed by the deadline: the read ends.
	_, _ = io.ReadAll(c)
	if n := len(e.a.proxy.Connections()); n != 0 {
		t.Fatalf("%d connections left after the deadline", n)
	}
}

func TestConcurrentConnections(t *testing.T) {
	e := newEnv(t, envOpts{})
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.echoPort))
		go func() {
			msg := bytes.Repeat([]byte{byte('a' + i)}, 50_000+i)
			got, err := roundTrip(c, msg)
			if err == nil && !bytes.Equal(got, msg) {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		<-e.echoSeen
	}
}

// TestClientResetReachesServer: an abort (RST) by the client ends the
// pod's connection with a reset too, not a clean EOF that would make a
// truncated request look complete.
func TestClientResetReachesServer(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.echoPort))
	if _, err := c.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 7)); err != nil { // echoed: the tunnel is up
		t.Fatal(err)
	}
	<-e.echoSeen
	c.SetLinger(0)
	c.Close()
	if err := <-e.echoErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server's connection ended with %v, want a reset", err)
	}
	for _, n := range []*node{e.a, e.b} {
		if line := n.logs.next(t); line["error"] == nil {
			t.Errorf("access log of a reset connection has no error: %v", line)
		}
	}
}

// TestServerResetReachesClient: a pod that aborts its connection (RST)
// makes the client's connection end with a reset too, not a clean EOF.
func TestServerResetReachesClient(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial(t, e.outboundLn, clientIP, netip.AddrPortFrom(serverIP, e.abortPort))
	if _, err := c.Write(bytes.Repeat([]byte("x"), abortLen)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client's connection ended with %v, want a reset", err)
	}
	for _, n := range []*node{e.a, e.b} {
		if line := n.logs.next(t); line["error"] == nil {
			t.Errorf("access log of a reset connection has no error: %v", line)
		}
	}
}

// TestForwardedForSpoofing: an ALLOW policy with ipBlocks admits the client
// pod's connection, whose `forwarded: for=` its own identity vouches for,
// but not a mesh peer of another identity claiming the client pod's address;
// that peer is judged, and logged, by its connection's address.
func TestForwardedForSpoofing(t *testing.T) {
	e := newEnv(t, envOpts{})
	setPolicies(t, e.b, &security.Authorization{Name: "allow-client-ip", Namespace: "b", Scope: security.Scope_NAMESPACE,
		Action: security.Action_ALLOW, Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
			SourceIps: []*security.Address{{Address: clientIP.AsSlice(), Length: 32}}}}}}}}})
	// The peer connects from outsideIP, not from the pod it claims to be.
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(outsideIP, 0))}
	cl, err := hbone.NewClient(hbone.ClientConfig{Certs: e.certs, Bundle: e.ca.Bundle, DialContext: d.DialContext})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tests := []struct {
		name    string
		source  spiffe.Identity
		allowed bool
		wantSrc netip.Addr
	}{
		{"the client pod's identity", e.clientID, true, clientIP},
		{"an identity without workloads", e.otherID, false, outsideIP},
		{"another workload's identity", e.serverID, false, outsideIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := cl.Dial(context.Background(), hbone.DialRequest{
				Source: tt.source, Peer: netip.AddrPortFrom(serverIP, e.hbonePort),
				Target: hbone.Target{Authority: netip.AddrPortFrom(serverIP, e.echoPort), ForwardedFor: clientIP},
			})
			if tt.allowed {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer st.Close()
				st.Write([]byte("ping"))
				st.CloseWrite()
				if got, err := io.ReadAll(st); err != nil || string(got) != "ping" {
					t.Fatalf("echo %q, %v", got, err)
				}
				<-e.echoSeen
			} else if !errors.Is(err, hbone.ErrDenied) {
				t.Fatalf("Dial err = %v, want ErrDenied", err)
			}
			line := e.b.logs.next(t)
			if src := netip.MustParseAddrPort(line["src.addr"].(string)).Addr(); src != tt.wantSrc {
				t.Errorf("inbound access log src.addr = %s, want %s (line %v)", src, tt.wantSrc, line)
			}
			ignored := e.b.logs.FilterMessage("untrusted forwarded-for ignored").
				FilterField(zap.Stringer("peer", tt.source)).Len()
			if (ignored > 0) == tt.allowed {
				t.Errorf("%d debug lines about an ignored forwarded-for, want them only for a spoofer", ignored)
			}
		})
	}
}
