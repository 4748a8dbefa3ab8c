package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/internal/fixture"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func id(ns, sa string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
}

func mesh() []*workloadapi.Address {
	return []*workloadapi.Address{
		fixture.Workload("client", "a", "client", "A", "10.0.1.1"),
		fixture.Workload("server", "b", "server", "B", "10.0.2.1"),
		fixture.Workload("guarded", "b", "guarded", "B", "10.0.2.2", fixture.WaypointAt("10.0.2.9")),
		fixture.Workload("waypoint", "b", "waypoint", "B", "10.0.2.9"),
		fixture.Workload("legacy", "b", "legacy", "B", "10.0.2.3", fixture.NotHBONE),
		fixture.Workload("remote", "b", "server", "C", "10.0.3.1"),
		// reviews is an endpoint of a service with a waypoint (svc-waypoint).
		fixture.Workload("reviews", "b", "reviews", "B", "10.0.2.4", fixture.Member("b", "reviews", 9080, 9080)),
		fixture.ServiceWaypointAt(fixture.Service("b", "reviews", "10.96.0.4", 9080, 9080), "10.0.2.10"),
		fixture.Workload("svc-waypoint", "b", "svc-waypoint", "B", "10.0.2.10"),
	}
}

// nodeA is the address HBONE connections from node A's ztunnel come from.
var nodeA = netip.MustParseAddr("192.168.0.1")

func TestAuthorize(t *testing.T) {
	client := id("a", "client")
	tests := []struct {
		name      string
		policies  []*security.Authorization
		authority string
		peer      spiffe.Identity
		status    int
		wantErr   error
	}{
		{name: "no policy", authority: "10.0.2.1:8080", peer: client, status: http.StatusOK},
		{name: "allow client", policies: []*security.Authorization{fixture.AllowPrincipal("b", "allow", "cluster.local/ns/a/sa/client")},
			authority: "10.0.2.1:8080", peer: client, status: http.StatusOK},
		{name: "allow other", policies: []*security.Authorization{fixture.AllowPrincipal("b", "allow", "cluster.local/ns/a/sa/other")},
			authority: "10.0.2.1:8080", peer: client, status: http.StatusUnauthorized},
		{name: "deny port", policies: []*security.Authorization{fixture.DenyPort("b", "deny", 8080)},
			authority: "10.0.2.1:8080", peer: client, status: http.StatusUnauthorized},
		{name: "deny other port", policies: []*security.Authorization{fixture.DenyPort("b", "deny", 9090)},
			authority: "10.0.2.1:8080", peer: client, status: http.StatusOK},
		{name: "policy of another namespace", policies: []*security.Authorization{fixture.DenyPort("a", "deny", 8080)},
			authority: "10.0.2.1:8080", peer: client, status: http.StatusOK},
		{name: "unknown destination", authority: "10.0.9.9:8080", peer: client, status: http.StatusBadRequest, wantErr: route.ErrUnknownDestination},
		{name: "other node", authority: "10.0.3.1:8080", peer: client, status: http.StatusBadRequest, wantErr: route.ErrNotLocal},
		{name: "not enrolled", authority: "10.0.2.3:8080", peer: client, status: http.StatusBadRequest, wantErr: route.ErrNotEnrolled},
		{name: "waypoint bypass", authority: "10.0.2.2:8080", peer: client, status: http.StatusUnauthorized, wantErr: route.ErrWaypointBypass},
		{name: "from waypoint", authority: "10.0.2.2:8080", peer: id("b", "waypoint"), status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := fixture.Store(t, mesh(), tt.policies...)
			v, err := Authorize(st.Snapshot(), route.Local{Node: "B"}, Request{
				Authority: netip.MustParseAddrPort(tt.authority), Peer: tt.peer, RemoteIP: nodeA})
			if v.Status != tt.status {
				t.Fatalf("status = %d, want %d (err %v)", v.Status, tt.status, err)
			}
			if (err == nil) != (tt.status == http.StatusOK) {
				t.Fatalf("err = %v with status %d", err, v.Status)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.status == http.StatusOK && v.Inbound.Target != netip.MustParseAddrPort(tt.authority) {
				t.Fatalf("target = %s", v.Inbound.Target)
			}
		})
	}
}

func TestSourceIP(t *testing.T) {
	client, server, waypoint := id("a", "client"), id("b", "server"), id("b", "waypoint")
	tests := []struct {
		name      string
		dst       string // destination workload uid, "" when the target was refused
		peer      spiffe.Identity
		forwarded string // "" for no header
		want      string // "remote": nodeA
		wantFrom  string
	}{
		{name: "no header", dst: "server", peer: client, want: "remote", wantFrom: SourceRemote},
		{name: "own pod", dst: "server", peer: client, forwarded: "10.0.1.1", want: "10.0.1.1", wantFrom: SourceOwnWorkload},
		{name: "own pod, IPv4-mapped", dst: "server", peer: client, forwarded: "::ffff:10.0.1.1", want: "10.0.1.1", wantFrom: SourceOwnWorkload},
		{name: "own pod, target refused", peer: client, forwarded: "10.0.1.1", want: "10.0.1.1", wantFrom: SourceOwnWorkload},
		{name: "spoofed pod of another identity", dst: "server", peer: client, forwarded: "10.0.2.1", want: "remote", wantFrom: SourceUntrusted},
		{name: "unknown address", dst: "server", peer: client, forwarded: "10.9.9.9", want: "remote", wantFrom: SourceUntrusted},
		{name: "node address of the peer", dst: "server", peer: client, forwarded: "192.168.0.1", want: "remote", wantFrom: SourceUntrusted},
		// Certificates name identities, not pods: a peer speaks for every
		// pod of its identity, wherever it runs.
		{name: "another pod of the same identity", dst: "server", peer: server, forwarded: "10.0.3.1", want: "10.0.3.1", wantFrom: SourceOwnWorkload},
		{name: "workload-bound waypoint", dst: "guarded", peer: waypoint, forwarded: "10.9.9.9", want: "10.9.9.9", wantFrom: SourceWaypoint},
		{name: "service-bound waypoint", dst: "reviews", peer: id("b", "svc-waypoint"), forwarded: "10.0.1.1", want: "10.0.1.1", wantFrom: SourceWaypoint},
		{name: "waypoint of another workload", dst: "server", peer: waypoint, forwarded: "10.0.1.1", want: "remote", wantFrom: SourceUntrusted},
		{name: "service waypoint of another workload", dst: "guarded", peer: id("b", "svc-waypoint"), forwarded: "10.0.1.1", want: "remote", wantFrom: SourceUntrusted},
		{name: "waypoint, target refused", peer: waypoint, forwarded: "10.9.9.9", want: "remote", wantFrom: SourceUntrusted},
		{name: "unknown identity", dst: "guarded", peer: id("x", "stranger"), forwarded: "10.0.1.1", want: "remote", wantFrom: SourceUntrusted},
	}
	snap := fixture.Store(t, mesh()).Snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst *state.Workload
			if tt.dst != "" {
				if dst = snap.WorkloadByUID(tt.dst); dst == nil {
					t.Fatalf("no workload %s in the fixture", tt.dst)
				}
			}
			var fwd netip.Addr
			if tt.forwarded != "" {
				fwd = netip.MustParseAddr(tt.forwarded)
			}
			want := nodeA
			if tt.want != "remote" {
				want = netip.MustParseAddr(tt.want)
			}
			got, from := SourceIP(snap, route.Local{Node: "B"}, dst, tt.peer, fwd, nodeA)
			if got != want || from != tt.wantFrom {
				t.Fatalf("SourceIP = %s (%s), want %s (%s)", got, from, want, tt.wantFrom)
			}
		})
	}
}

// TestAuthorizeSourceIPPolicy: ipBlocks are evaluated against the address
// SourceIP trusts, so a peer cannot claim its way into an ALLOW or out of
// a DENY.
func TestAuthorizeSourceIPPolicy(t *testing.T) {
	allowClient := fixture.SourceIPs("b", "allow-client", security.Action_ALLOW, "10.0.1.1/32")
	denyNodeA := fixture.SourceIPs("b", "deny-node-a", security.Action_DENY, "192.168.0.0/24")
	tests := []struct {
		name      string
		policy    *security.Authorization
		authority string
		peer      spiffe.Identity
		forwarded string
		status    int
		wantSrc   string
	}{
		{"allowed client from its own pod", allowClient, "10.0.2.1:8080", id("a", "client"), "10.0.1.1", http.StatusOK, "10.0.1.1"},
		{"spoofer claiming the allowed pod", allowClient, "10.0.2.1:8080", id("a", "other"), "10.0.1.1", http.StatusUnauthorized, "192.168.0.1"},
		{"spoofer of a known identity claiming the allowed pod", allowClient, "10.0.2.1:8080", id("b", "server"), "10.0.1.1", http.StatusUnauthorized, "192.168.0.1"},
		{"no header", allowClient, "10.0.2.1:8080", id("a", "client"), "", http.StatusUnauthorized, "192.168.0.1"},
		{"waypoint for the allowed client", allowClient, "10.0.2.2:8080", id("b", "waypoint"), "10.0.1.1", http.StatusOK, "10.0.1.1"},
		{"spoofer escaping a DENY on its address", denyNodeA, "10.0.2.1:8080", id("a", "other"), "10.0.1.1", http.StatusUnauthorized, "192.168.0.1"},
		{"own pod outside the DENY", denyNodeA, "10.0.2.1:8080", id("a", "client"), "10.0.1.1", http.StatusOK, "10.0.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := fixture.Store(t, mesh(), tt.policy)
			req := Request{Authority: netip.MustParseAddrPort(tt.authority), Peer: tt.peer, RemoteIP: nodeA}
			if tt.forwarded != "" {
				req.ForwardedFor = netip.MustParseAddr(tt.forwarded)
			}
			v, err := Authorize(st.Snapshot(), route.Local{Node: "B"}, req)
			if v.Status != tt.status {
				t.Fatalf("status = %d (%s), want %d; err %v", v.Status, v.Reason, tt.status, err)
			}
			if v.SrcIP != netip.MustParseAddr(tt.wantSrc) {
				t.Fatalf("policy saw source %s (%s), want %s", v.SrcIP, v.SrcFrom, tt.wantSrc)
			}
		})
	}
}

type certs map[spiffe.Identity]*tls.Certificate

func (c certs) ServerCertificate(_ context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	if cert, ok := c[id]; ok {
		return cert, nil
	}
	return nil, errors.New("no certificate")
}

type addrConn struct {
	net.Conn
	local net.Addr
}

func (a addrConn) LocalAddr() net.Addr { return a.local }

func TestGetCertificatePicksDestinationWorkload(t *testing.T) {
	ca := hbonetest.MustCA(t, "cluster.local")
	server := ca.MustIssue(t, id("b", "server"), time.Hour)
	h, err := New(Config{Store: fixture.Store(t, mesh()), Local: route.Local{Node: "B"},
		Certs: certs{id("b", "server"): server}, Tracker: conntrack.New(zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	hello := func(ip string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{Conn: addrConn{local: &net.TCPAddr{IP: net.ParseIP(ip), Port: 15008}}}
	}
	if got, err := h.GetCertificate(hello("10.0.2.1")); err != nil || got != server {
		t.Fatalf("10.0.2.1: %v, %v", got, err)
	}
	if _, err := h.GetCertificate(hello("10.0.9.9")); !errors.Is(err, ErrNoWorkload) {
		t.Fatalf("unknown address: err = %v", err)
	}
	if _, err := h.GetCertificate(hello("10.0.2.2")); err == nil {
		t.Fatal("workload without a certificate: no error")
	}
}

// TestTransparentDialer binds a local loopback address with IP_TRANSPARENT
// (root only); the server sees that address as the source.
func TestTransparentDialer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("IP_TRANSPARENT needs CAP_NET_ADMIN")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		got <- c.RemoteAddr()
		io.Copy(io.Discard, c)
		c.Close()
	}()
	src := netip.MustParseAddr("127.0.0.42")
	c, err := TransparentDialer()(context.Background(), src, ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ra := <-got
	if ra == nil || ra.(*net.TCPAddr).AddrPort().Addr() != src {
		t.Fatalf("server saw %v, want %s", ra, src)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeepSource(t *testing.T) {
	hostNet := fixture.Workload("hostnet", "a", "agent", "A", "192.168.0.1")
	hostNet.GetWorkload().NetworkMode = workloadapi.NetworkMode_HOST_NETWORK
	snap := fixture.Store(t, append(mesh(),
		fixture.Workload("plain-remote", "a", "plain", "A", "10.0.1.2", fixture.NotHBONE),
		fixture.Workload("nodeless", "a", "x", "", "10.0.1.3"),
		hostNet,
	)).Snapshot()
	tests := []struct {
		name  string
		local route.Local
		src   string // "" for no address
		want  bool
	}{
		{name: "client on another node", local: route.Local{Node: "B"}, src: "10.0.1.1", want: true},
		{name: "IPv4-mapped", local: route.Local{Node: "B"}, src: "::ffff:10.0.1.1", want: true},
		{name: "non-mesh client on another node (plaintext inbound)", local: route.Local{Node: "B"}, src: "10.0.1.2", want: true},
		{name: "client on this node", local: route.Local{Node: "B"}, src: "10.0.2.1", want: false},
		{name: "unknown address (untrusted forwarded-for: peer node IP)", local: route.Local{Node: "B"}, src: "10.9.9.9", want: false},
		{name: "host-network workload", local: route.Local{Node: "B"}, src: "192.168.0.1", want: false},
		{name: "workload without a node", local: route.Local{Node: "B"}, src: "10.0.1.3", want: false},
		{name: "no address", local: route.Local{Node: "B"}, want: false},
		{name: "no local node name", local: route.Local{}, src: "10.0.1.1", want: false},
		{name: "other network", local: route.Local{Node: "B", Network: "net2"}, src: "10.0.1.1", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src netip.Addr
			if tt.src != "" {
				src = netip.MustParseAddr(tt.src)
			}
			if got := KeepSource(snap, tt.local, src); got != tt.want {
				t.Fatalf("KeepSource(%s) = %v, want %v", tt.src, got, tt.want)
			}
		})
	}
}

// TestSourceKeepingDial: the keeping dialer is used only when KeepSource
// says so; otherwise the plain dial reaches the pod.
func TestSourceKeepingDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var kept []netip.Addr
	keep := func(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
		kept = append(kept, src)
		return PlainDial(ctx, src, dst)
	}
	dial := SourceKeepingDial(fixture.Store(t, mesh()), route.Local{Node: "B"}, keep)
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	for _, src := range []string{"10.0.1.1", "10.0.2.1", "10.9.9.9"} {
		c, err := dial(context.Background(), netip.MustParseAddr(src), dst)
		if err != nil {
			t.Fatalf("dial for %s: %v", src, err)
		}
		c.Close()
	}
	if len(kept) != 1 || kept[0] != netip.MustParseAddr("10.0.1.1") {
		t.Fatalf("source kept for %v, want only the other node's client 10.0.1.1", kept)
	}
}
