package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/internal/fixture"
	"github.com/ambient-mesh/ambient/ztunnel/route"
)

func TestDecide(t *testing.T) {
	st := fixture.Store(t, []*workloadapi.Address{
		fixture.Workload("client", "a", "client", "A", "10.0.1.1"),
		fixture.Workload("server", "b", "server", "B", "10.0.2.1", fixture.Member("b", "echo", 80, 8080)),
		fixture.Workload("guarded", "b", "guarded", "B", "10.0.2.2", fixture.WaypointAt("10.0.2.9")),
		fixture.Workload("waypoint", "b", "waypoint", "B", "10.0.2.9"),
		fixture.Workload("legacy", "b", "legacy", "B", "10.0.2.3", fixture.NotHBONE),
		fixture.Service("b", "echo", "10.96.0.1", 80, 8080),
	})
	id := func(ns, sa string) spiffe.Identity {
		return spiffe.Identity{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
	}
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		src     string
		dst     string
		wantErr error
		kind    route.Kind
		hbone   string
		target  string
		peer    spiffe.Identity
	}{
		{name: "unknown source", src: "10.0.9.9", dst: "10.0.2.1:8080", wantErr: ErrUnknownSource},
		{name: "pod", src: "10.0.1.1", dst: "10.0.2.1:8080", kind: route.Direct, hbone: "10.0.2.1:15008", target: "10.0.2.1:8080", peer: id("b", "server")},
		{name: "service VIP", src: "10.0.1.1", dst: "10.96.0.1:80", kind: route.Direct, hbone: "10.0.2.1:15008", target: "10.0.2.1:8080", peer: id("b", "server")},
		{name: "workload waypoint", src: "10.0.1.1", dst: "10.0.2.2:80", kind: route.ViaWaypoint, hbone: "10.0.2.9:15008", target: "10.0.2.2:80", peer: id("b", "waypoint")},
		{name: "not in mesh", src: "10.0.1.1", dst: "192.0.2.1:443", kind: route.Passthrough, target: "192.0.2.1:443"},
		{name: "not HBONE", src: "10.0.1.1", dst: "10.0.2.3:80", kind: route.Passthrough, target: "10.0.2.3:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decide(st.Snapshot(), route.Local{Node: "A"}, netip.MustParseAddr(tt.src), ap(tt.dst), route.Options{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Src == nil || p.Src.Name != "client" || p.Kind != tt.kind || p.Target != ap(tt.target) || p.ExpectedIdentity != tt.peer {
				t.Fatalf("plan = %+v", p)
			}
			if tt.hbone != "" && p.HBONEAddr != ap(tt.hbone) {
				t.Fatalf("HBONE addr = %s, want %s", p.HBONEAddr, tt.hbone)
			}
		})
	}
}

func TestLocalAddrUnmaps(t *testing.T) {
	c := fakeConn{local: &net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 80}}
	got, err := LocalAddr(c)
	if err != nil || got != netip.MustParseAddrPort("10.0.0.1:80") {
		t.Fatalf("LocalAddr = %s, %v", got, err)
	}
}

type fakeConn struct {
	net.Conn
	local net.Addr
}

func (f fakeConn) LocalAddr() net.Addr { return f.local }

type seqRand struct{ n int }

func (s *seqRand) IntN(n int) int { s.n++; return s.n % n }

func TestLockedRandDelegates(t *testing.T) {
	l := &lockedRand{r: &seqRand{}}
	if a, b := l.IntN(2), l.IntN(2); a == b {
		t.Fatalf("lockedRand did not use the wrapped source: %d %d", a, b)
	}
}

func TestConnectRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&hbone.DialError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("wrapped: %w", &hbone.DialError{Op: "tls", Err: io.EOF}), true},
		{&hbone.DialError{Op: "identity", Err: errors.New("peer is not the expected identity")}, false},
		{&hbone.DialError{Op: "cert", Err: hbone.ErrCertExpired}, false},
		{&hbone.StatusError{Status: 401}, false},
		{fmt.Errorf("%w: %w", hbone.ErrConnClosed, io.ErrUnexpectedEOF), true},
		{hbone.ErrStreamReset, true},
		{hbone.ErrDenied, false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := ConnectRetryable(tt.err); got != tt.want {
			t.Errorf("ConnectRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
