package route

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

func wrapU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

// seqRand returns its values in turn (mod n), and records the n asked for.
type seqRand struct {
	vals []int
	ns   []int
}

func (r *seqRand) IntN(n int) int {
	r.ns = append(r.ns, n)
	v := 0
	if len(r.vals) > 0 {
		v, r.vals = r.vals[0], r.vals[1:]
	}
	return v % n
}

func id(sa string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: sa}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestRoute(t *testing.T) {
	snap := fixture(t)
	tests := []struct {
		name     string
		src      string // uid
		dst      string
		rand     []int
		want     Decision // compared on Kind, HBONEAddr, Target, ExpectedIdentity, SameNode, Reason
		wantDst  string   // DstWorkload uid
		wantSvc  string   // DstService key
		wantWP   string   // Waypoint uid
		wantErr  error
		errMatch string
	}{
		{
			name: "workload IP direct HBONE to pod on other node", src: "sleep", dst: "10.0.2.2:8080",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.2:15008"), Target: ap("10.0.2.2:8080"), ExpectedIdentity: id("echo-b"), Reason: ReasonToWorkload},
			wantDst: "echo-b",
		},
		{
			name: "workload IP on same node", src: "sleep", dst: "10.0.1.2:8080",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.1.2:15008"), Target: ap("10.0.1.2:8080"), ExpectedIdentity: id("echo-z"), SameNode: true, Reason: ReasonToWorkload},
			wantDst: "echo-z",
		},
		{
			name: "service VIP: endpoints of every node are candidates (the pick lands on the same node)", src: "sleep", dst: "10.96.0.10:80", rand: []int{1},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.1.2:15008"), Target: ap("10.0.1.2:8080"), ExpectedIdentity: id("echo-z"), SameNode: true, Reason: ReasonServiceEndpoint},
			wantDst: "echo-z", wantSvc: "default/echo",
		},
		{
			name: "service VIP from another node: only candidate echo on B", src: "reviews-1", dst: "10.96.0.10:80", rand: []int{0},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.2:15008"), Target: ap("10.0.2.2:8080"), ExpectedIdentity: id("echo-b"), SameNode: true, Reason: ReasonServiceEndpoint},
			wantDst: "echo-b", wantSvc: "default/echo",
		},
		{
			name: "random pick among equals: first", src: "sleep", dst: "10.96.0.41:80", rand: []int{0},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.7:15008"), Target: ap("10.0.2.7:8080"), ExpectedIdentity: id("pair-1"), Reason: ReasonServiceEndpoint},
			wantDst: "pair-1", wantSvc: "default/pair",
		},
		{
			name: "random pick among equals: second", src: "sleep", dst: "10.96.0.41:80", rand: []int{1},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.8:15008"), Target: ap("10.0.2.8:8080"), ExpectedIdentity: id("pair-2"), Reason: ReasonServiceEndpoint},
			wantDst: "pair-2", wantSvc: "default/pair",
		},
		{
			name: "endpoint port mapping overrides a zero service target", src: "sleep", dst: "10.96.0.11:80", rand: []int{1},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.3:15008"), Target: ap("10.0.2.3:9000"), ExpectedIdentity: id("named-1"), Reason: ReasonServiceEndpoint},
			wantDst: "named-1", wantSvc: "default/named",
		},
		{
			name: "capacity 0 endpoint never picked", src: "sleep", dst: "10.96.0.42:80", rand: []int{0},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.11:15008"), Target: ap("10.0.2.11:8080"), ExpectedIdentity: id("cap-1"), Reason: ReasonServiceEndpoint},
			wantDst: "cap-1", wantSvc: "default/cap",
		},
		{
			name: "v6 VIP picks the endpoint's v6 address", src: "sleep", dst: "[fd00::96:43]:80",
			want:    Decision{Kind: Direct, HBONEAddr: ap("[fd00::12]:15008"), Target: ap("[fd00::12]:8080"), ExpectedIdentity: id("dual"), Reason: ReasonServiceEndpoint},
			wantDst: "dual", wantSvc: "default/dual",
		},
		{
			name: "no healthy endpoints", src: "sleep", dst: "10.96.0.12:80",
			wantErr: ErrNoHealthyEndpoints, errMatch: "route to service default/down port 80",
		},
		{
			name: "service without endpoints", src: "sleep", dst: "10.96.0.13:80",
			wantErr: ErrNoHealthyEndpoints, errMatch: "default/empty",
		},
		{
			name: "undefined service port", src: "sleep", dst: "10.96.0.10:81",
			wantErr: ErrNoHealthyEndpoints, errMatch: "service has no port 81",
		},
		{
			name: "strict node preference with no local endpoint", src: "sleep", dst: "10.96.0.44:80",
			wantErr: ErrNoHealthyEndpoints, errMatch: "default/strictnode",
		},
		{
			name: "service waypoint by hostname", src: "sleep", dst: "10.96.0.30:9080",
			want:    Decision{Kind: ViaWaypoint, HBONEAddr: ap("10.0.2.9:15008"), Target: ap("10.96.0.30:9080"), ExpectedIdentity: id("waypoint"), Reason: ReasonServiceWaypoint},
			wantSvc: "default/reviews", wantWP: "wp-1",
		},
		{
			name: "service waypoint by address", src: "sleep", dst: "10.96.0.31:9080",
			want:    Decision{Kind: ViaWaypoint, HBONEAddr: ap("10.0.2.9:15008"), Target: ap("10.96.0.31:9080"), ExpectedIdentity: id("waypoint"), Reason: ReasonServiceWaypoint},
			wantSvc: "default/reviews-byaddr", wantWP: "wp-1",
		},
		{
			name: "weighted waypoints: weight 0 gets nothing", src: "sleep", dst: "10.96.0.34:9080", rand: []int{0},
			want:    Decision{Kind: ViaWaypoint, HBONEAddr: ap("10.0.2.9:15008"), Target: ap("10.96.0.34:9080"), ExpectedIdentity: id("waypoint"), Reason: ReasonServiceWaypoint},
			wantSvc: "default/weighted", wantWP: "wp-1",
		},
		{
			name: "source is the waypoint: go to the endpoint", src: "wp-1", dst: "10.96.0.30:9080",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.6:15008"), Target: ap("10.0.2.6:9080"), ExpectedIdentity: id("reviews-1"), SameNode: true, Reason: ReasonServiceEndpoint},
			wantDst: "reviews-1", wantSvc: "default/reviews",
		},
		{
			name: "service waypoint not found", src: "sleep", dst: "10.96.0.32:9080",
			wantErr: ErrWaypointNotFound, errMatch: "default/nowhere:15008",
		},
		{
			name: "service waypoint without pods", src: "sleep", dst: "10.96.0.33:9080",
			wantErr: ErrNoHealthyEndpoints, errMatch: "waypoint default/wpdown:15008",
		},
		{
			name: "workload waypoint keeps the pod address as authority", src: "sleep", dst: "10.0.2.50:5432",
			want:    Decision{Kind: ViaWaypoint, HBONEAddr: ap("10.0.2.9:15008"), Target: ap("10.0.2.50:5432"), ExpectedIdentity: id("waypoint"), Reason: ReasonWorkloadWaypoint},
			wantDst: "db", wantWP: "wp-1",
		},
		{
			name: "workload waypoint skipped for traffic from it", src: "wp-1", dst: "10.0.2.50:5432",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.50:15008"), Target: ap("10.0.2.50:5432"), ExpectedIdentity: id("db"), SameNode: true, Reason: ReasonToWorkload},
			wantDst: "db",
		},
		{
			name: "workload not enrolled is passthrough", src: "sleep", dst: "10.0.1.20:8080",
			want:    Decision{Kind: Passthrough, Target: ap("10.0.1.20:8080"), Reason: ReasonNotHBONE},
			wantDst: "legacy",
		},
		{
			name: "service with non-HBONE endpoint is passthrough to the endpoint", src: "sleep", dst: "10.96.0.40:80",
			want:    Decision{Kind: Passthrough, Target: ap("10.0.1.20:8080"), Reason: ReasonNotHBONE},
			wantDst: "legacy", wantSvc: "default/legacy",
		},
		{
			name: "unknown IP is passthrough", src: "sleep", dst: "93.184.216.34:443",
			want: Decision{Kind: Passthrough, Target: ap("93.184.216.34:443"), Reason: ReasonNotInMesh},
		},
		{
			name: "v4-mapped destination is unmapped", src: "sleep", dst: "[::ffff:10.0.2.2]:8080",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.2:15008"), Target: ap("10.0.2.2:8080"), ExpectedIdentity: id("echo-b"), Reason: ReasonToWorkload},
			wantDst: "echo-b",
		},
		{
			name: "LB passthrough service keeps the original destination", src: "sleep", dst: "10.96.0.46:80",
			want:    Decision{Kind: Passthrough, Target: ap("10.96.0.46:80"), Reason: ReasonServicePassthrough},
			wantSvc: "default/lbpass",
		},
		{
			name: "FAILOVER zone preference picks the same-zone endpoint", src: "sleep", dst: "10.96.0.47:80", rand: []int{0},
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.8:15008"), Target: ap("10.0.2.8:8080"), ExpectedIdentity: id("pair-2"), Reason: ReasonServiceEndpoint},
			wantDst: "pair-2", wantSvc: "default/zonal",
		},
		{
			name: "namespace-visible service from another namespace is denied", src: "sleep", dst: "10.96.0.45:80",
			want:    Decision{Kind: Deny, Reason: ReasonServiceNotVisible},
			wantSvc: "private/priv",
		},
		{
			name: "namespace-visible service from its namespace", src: "priv-1", dst: "10.96.0.45:80",
			want:    Decision{Kind: Direct, HBONEAddr: ap("10.0.2.13:15008"), Target: ap("10.0.2.13:8080"), ExpectedIdentity: spiffe.Identity{TrustDomain: "cluster.local", Namespace: "private", ServiceAccount: "priv-1"}, SameNode: true, Reason: ReasonServiceEndpoint},
			wantDst: "priv-1", wantSvc: "private/priv",
		},
		{
			name: "unknown source", src: "", dst: "10.0.2.2:8080",
			wantErr: ErrUnknownSource,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := snap.WorkloadByUID(tt.src)
			if tt.src != "" && src == nil {
				t.Fatalf("no source %q in fixture", tt.src)
			}
			got, err := Route(snap, src, ap(tt.dst), Options{Rand: &seqRand{vals: tt.rand}})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			if got.Kind != tt.want.Kind || got.HBONEAddr != tt.want.HBONEAddr || got.Target != tt.want.Target ||
				got.ExpectedIdentity != tt.want.ExpectedIdentity || got.SameNode != tt.want.SameNode || got.Reason != tt.want.Reason {
				t.Errorf("Route =\n  {%v hbone=%v target=%v id=%v sameNode=%v %q}\nwant\n  {%v hbone=%v target=%v id=%v sameNode=%v %q}",
					got.Kind, got.HBONEAddr, got.Target, got.ExpectedIdentity, got.SameNode, got.Reason,
					tt.want.Kind, tt.want.HBONEAddr, tt.want.Target, tt.want.ExpectedIdentity, tt.want.SameNode, tt.want.Reason)
			}
			if u := uidOf(got.DstWorkload); u != tt.wantDst {
				t.Errorf("DstWorkload = %q, want %q", u, tt.wantDst)
			}
			if u := uidOf(got.Waypoint); u != tt.wantWP {
				t.Errorf("Waypoint = %q, want %q", u, tt.wantWP)
			}
			svc := ""
			if got.DstService != nil {
				svc = got.DstService.Key
			}
			if svc != tt.wantSvc {
				t.Errorf("DstService = %q, want %q", svc, tt.wantSvc)
			}
		})
	}
}

// TestRouteRandDomain checks that the random pick is weighted by
// capacity over exactly the preferred candidates.
func TestRouteRandDomain(t *testing.T) {
	snap := fixture(t)
	r := &seqRand{}
	if _, err := Route(snap, snap.WorkloadByUID("sleep"), ap("10.96.0.41:80"), Options{Rand: r}); err != nil {
		t.Fatal(err)
	}
	if len(r.ns) != 1 || r.ns[0] != 2 {
		t.Errorf("IntN called with %v, want [2] (two equal endpoints)", r.ns)
	}
	r = &seqRand{}
	if _, err := Route(snap, snap.WorkloadByUID("sleep"), ap("10.96.0.10:80"), Options{Rand: r}); err != nil {
		t.Fatal(err)
	}
	if len(r.ns) != 1 || r.ns[0] != 2 {
		t.Errorf("IntN called with %v, want [2] (both nodes' endpoints: no same-node preference by default)", r.ns)
	}
}

func TestRouteNilRandAndPort(t *testing.T) {
	snap := fixture(t)
	d, err := Route(snap, snap.WorkloadByUID("sleep"), ap("10.96.0.41:80"), Options{HBONEPort: 15999})
	if err != nil {
		t.Fatal(err)
	}
	if d.HBONEAddr.Port() != 15999 {
		t.Errorf("HBONEAddr = %v, want port 15999", d.HBONEAddr)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Direct: "direct", ViaWaypoint: "waypoint", Passthrough: "passthrough", Deny: "deny", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}

func uidOf(w *state.Workload) string {
	if w == nil {
		return ""
	}
	return w.UID
}

// TestRouteAvoid: an endpoint a connection just failed to reach is not
// picked again while another is usable, and is when it is the only one.
func TestRouteAvoid(t *testing.T) {
	snap := fixture(t)
	sleep := snap.WorkloadByUID("sleep")
	addr := netip.MustParseAddr
	tests := []struct {
		name  string
		dst   string
		avoid []netip.Addr
		rand  []int
		want  string // DstWorkload uid
	}{
		{name: "no avoid: the pick", dst: "10.96.0.41:80", rand: []int{0}, want: "pair-1"},
		{name: "first avoided: the other whatever the pick", dst: "10.96.0.41:80", avoid: []netip.Addr{addr("10.0.2.7")}, rand: []int{0}, want: "pair-2"},
		{name: "second avoided", dst: "10.96.0.41:80", avoid: []netip.Addr{addr("10.0.2.8")}, rand: []int{0}, want: "pair-1"},
		{name: "both avoided: back to the pick", dst: "10.96.0.41:80", avoid: []netip.Addr{addr("10.0.2.7"), addr("10.0.2.8")}, rand: []int{1}, want: "pair-2"},
		{name: "unrelated address avoided", dst: "10.96.0.41:80", avoid: []netip.Addr{addr("10.9.9.9")}, rand: []int{1}, want: "pair-2"},
		{name: "a workload IP has no alternative", dst: "10.0.2.2:8080", avoid: []netip.Addr{addr("10.0.2.2")}, want: "echo-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Route(snap, sleep, ap(tt.dst), Options{Rand: &seqRand{vals: tt.rand}, Avoid: tt.avoid})
			if err != nil {
				t.Fatal(err)
			}
			if d.DstWorkload == nil || d.DstWorkload.UID != tt.want {
				t.Errorf("DstWorkload = %v, want %s", d.DstWorkload, tt.want)
			}
		})
	}
}
