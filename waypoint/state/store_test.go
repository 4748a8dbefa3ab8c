package state_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

func TestBuildGoldens(t *testing.T) {
	for _, name := range []string{"weights", "header-match", "timeout-retry", "fault", "authz", "grpc", "missing-backend", "redirect", "rewrite", "header-modifiers", "gateway-parent"} {
		t.Run(name, func(t *testing.T) {
			snap, err := state.Build(statetest.MustLoad(t, name))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			ch := snap.Chain(9080)
			if name == "grpc" {
				ch = snap.Chain(50051)
			}
			if ch == nil {
				t.Fatal("no HTTP chain for the service port")
			}
			if snap.Routes[ch.RouteName] == nil {
				t.Fatalf("chain %s routes with %q, not compiled", ch.Name, ch.RouteName)
			}
			if len(ch.RBAC) != 2 || ch.RBAC[0].Name != "ambient.rbac.deny" {
				t.Errorf("RBAC filters = %+v", ch.RBAC)
			}
			if snap.Chain(3306) != nil {
				t.Error("port 3306 has a chain; want opaque")
			}
			for n, c := range snap.Clusters {
				if len(c.Endpoints) == 0 {
					t.Errorf("cluster %s has no endpoints", n)
				}
				if c.Service == "" {
					t.Errorf("cluster %s: no service hostname", n)
				}
			}
		})
	}
}

func TestEndpointMetadata(t *testing.T) {
	snap, err := state.Build(statetest.MustLoad(t, "grpc"))
	if err != nil {
		t.Fatal(err)
	}
	c := snap.Clusters["outbound|50051||greeter-v2.grpc.svc.cluster.local"]
	if c == nil || !c.HTTP2 {
		t.Fatalf("cluster = %+v, want HTTP2", c)
	}
	if c.Service != "greeter-v2.grpc.svc.cluster.local" {
		t.Errorf("service = %q", c.Service)
	}
	e := c.Endpoints[0]
	want := state.Endpoint{
		Address:     netip.MustParseAddrPort("10.244.2.32:5051"),
		Tunnel:      netip.MustParseAddrPort("10.244.2.32:15008"),
		Destination: netip.MustParseAddrPort("10.244.2.32:5051"),
		Node:        "node2", Healthy: true, Weight: 1,
	}
	want.Identity.TrustDomain, want.Identity.Namespace, want.Identity.ServiceAccount = "cluster.local", "grpc", "greeter"
	if *e != want {
		t.Errorf("endpoint = %+v\nwant %+v", *e, want)
	}
	if got := snap.EndpointByIP(netip.MustParseAddr("10.244.2.32")); got == nil || got.Address != want.Address {
		t.Errorf("EndpointByIP = %+v", got)
	}
	if snap.Clusters["outbound|9080||x"] != nil {
		t.Error("unexpected cluster")
	}
}

func TestRelocate(t *testing.T) {
	r := statetest.MustLoad(t, "weights")
	statetest.Relocate(r, map[netip.Addr]statetest.Relocation{
		netip.MustParseAddr("10.244.1.11"): {Tunnel: netip.MustParseAddrPort("127.0.0.5:4000"), Destination: netip.MustParseAddrPort("127.0.0.5:4001")},
	})
	snap, err := state.Build(r)
	if err != nil {
		t.Fatal(err)
	}
	e := snap.Clusters["outbound|9080||reviews-v1.default.svc.cluster.local"].Endpoints[0]
	if e.Tunnel.String() != "127.0.0.5:4000" || e.Destination.String() != "127.0.0.5:4001" || e.Address.String() != "127.0.0.5:4001" {
		t.Errorf("relocated endpoint = %+v", e)
	}
}

// A bad update names the resource and keeps the previous snapshot.
func TestBadUpdateKeepsSnapshot(t *testing.T) {
	r := statetest.MustLoad(t, "weights")
	s := state.NewStore()
	if err := s.Apply(r); err != nil {
		t.Fatal(err)
	}
	before := s.Load()

	bad := proto.Clone(r.Routes[0]).(*routev3.RouteConfiguration)
	bad.VirtualHosts[0].Routes[0].GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{}}
	err := s.SetRoutes([]*routev3.RouteConfiguration{bad})
	if err == nil || !strings.Contains(err.Error(), `RouteConfiguration "9080"`) || !strings.Contains(err.Error(), "hash_policy") {
		t.Errorf("SetRoutes(bad) = %v, want an error naming the route and field", err)
	}
	if !errors.Is(err, router.ErrUnsupported) {
		t.Errorf("error %v does not wrap router.ErrUnsupported", err)
	}

	badC := proto.Clone(r.Clusters[0]).(*clusterv3.Cluster)
	badC.LbPolicy = clusterv3.Cluster_MAGLEV
	err = s.SetClusters([]*clusterv3.Cluster{badC})
	if err == nil || !strings.Contains(err.Error(), badC.Name) || !errors.Is(err, state.ErrUnsupported) {
		t.Errorf("SetClusters(bad) = %v", err)
	}
	if s.Load() != before {
		t.Error("a refused update replaced the snapshot")
	}

	if err := s.SetClusters(r.Clusters[:1]); err != nil {
		t.Fatal(err)
	}
	after := s.Load()
	if after.Version != before.Version+1 || len(after.Clusters) != 1 || len(before.Clusters) != 3 {
		t.Errorf("versions %d→%d, clusters %d→%d", before.Version, after.Version, len(before.Clusters), len(after.Clusters))
	}
}

func TestServiceOfCluster(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"outbound|9080||reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"},
		{"outbound|9080|v1|reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"},
		{"invalid-backend|default/reviews-v3:9080", ""},
		{"inbound|9080||x", ""},
		{"", ""},
	} {
		if got := state.ServiceOfCluster(tc.in); got != tc.want {
			t.Errorf("ServiceOfCluster(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
