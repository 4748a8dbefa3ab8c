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
	}
}

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
				Authority: netip.MustParseAddrPort(tt.authority), Peer: tt.peer, SrcIP: netip.MustParseAddr("10.0.1.1")})
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
