package state_test

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

// fuzzGoldens are the baselines the fuzzed resources join: together they
// have RBAC filters, header matches, retries, faults, redirects, rewrites,
// gRPC clusters.
var fuzzGoldens = []string{"authz", "header-match", "redirect", "grpc", "fault"}

// FuzzApplyWaypointResources decodes arbitrary bytes as an Envoy Listener,
// RouteConfiguration, Cluster and ClusterLoadAssignment, as the xDS client
// does, and sets each (next to a golden's resources of its kind) on a store
// holding that golden: the store must never panic; an update it refuses
// must leave the previous snapshot in place; an accepted one must give a
// snapshot whose chains, route tables and RBAC filters evaluate requests.
func FuzzApplyWaypointResources(f *testing.F) {
	bases := make([]state.Resources, len(fuzzGoldens))
	for i, name := range fuzzGoldens {
		bases[i] = statetest.MustLoad(f, name)
	}
	for i, r := range bases {
		f.Add(uint8(i), marshalFirst(r.Listeners), marshalFirst(r.Routes), marshalFirst(r.Clusters), marshalFirst(r.Endpoints))
	}
	f.Add(uint8(0), []byte{0x0a, 0x01, 'x'}, []byte{0x0a, 0x00}, []byte{0xff}, []byte{})
	f.Fuzz(func(t *testing.T, which uint8, lb, rb, cb, eb []byte) {
		base := bases[int(which)%len(bases)]
		s := state.NewStore()
		if err := s.Apply(base); err != nil {
			t.Fatalf("golden: %v", err)
		}
		var (
			l  listenerv3.Listener
			rc routev3.RouteConfiguration
			c  clusterv3.Cluster
			la endpointv3.ClusterLoadAssignment
		)
		if proto.Unmarshal(lb, &l) == nil {
			set(t, s, func() error { return s.SetListeners(append(clone(base.Listeners), &l)) })
		}
		if proto.Unmarshal(rb, &rc) == nil {
			set(t, s, func() error { return s.SetRoutes(append(clone(base.Routes), &rc)) })
		}
		if proto.Unmarshal(cb, &c) == nil {
			set(t, s, func() error { return s.SetClusters(append(clone(base.Clusters), &c)) })
		}
		if proto.Unmarshal(eb, &la) == nil {
			set(t, s, func() error { return s.SetEndpoints(append(clone(base.Endpoints), &la)) })
		}
		exerciseSnapshot(s.Load(), &l, &rc)
		// Still a working store: the golden applies again.
		if err := s.Apply(base); err != nil {
			t.Fatalf("golden after the fuzzed update: %v", err)
		}
	})
}

func set(t *testing.T, s *state.Store, update func() error) {
	t.Helper()
	before := s.Load()
	if err := update(); err != nil {
		if s.Load() != before {
			t.Fatalf("refused update (%v) changed the snapshot", err)
		}
		if err.Error() == "" {
			t.Fatal("refused with an empty error")
		}
		return
	}
	if after := s.Load(); after == before || after.Version <= before.Version {
		t.Fatal("accepted update published no new snapshot")
	}
}

// exerciseSnapshot runs what the listener does per request over every
// chain, route table and cluster of snap.
func exerciseSnapshot(snap *state.Snapshot, l *listenerv3.Listener, rc *routev3.RouteConfiguration) {
	rnd := rand.New(rand.NewPCG(1, 2))
	hosts := []string{"", "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080", "*", rc.GetName()}
	for _, vh := range rc.GetVirtualHosts() {
		hosts = append(hosts, vh.GetDomains()...)
	}
	paths := []string{"/", "/api/v1", "/%zz", ""}
	for _, rt := range rc.GetVirtualHosts() {
		for _, r := range rt.GetRoutes() {
			paths = append(paths, r.GetMatch().GetPrefix(), r.GetMatch().GetPath())
		}
	}
	reqs := make([]router.RequestInfo, 0, len(hosts)*len(paths))
	for _, h := range hosts {
		for _, p := range paths {
			reqs = append(reqs, router.RequestInfo{Host: h, Method: "GET", Path: p,
				Headers: http.Header{"X-User": {"admin"}, "Content-Type": {"application/grpc"}}, Query: url.Values{"q": {"1"}}})
		}
	}
	ports := []uint32{0, 80, 9080, 50051, l.GetAddress().GetSocketAddress().GetPortValue()}
	for port := range snap.Chains {
		ports = append(ports, port)
	}
	peer := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}
	for _, port := range ports {
		ch := snap.Chain(port)
		if ch == nil {
			continue
		}
		t := snap.Routes[ch.RouteName]
		for _, req := range reqs {
			ar := &authz.Request{Method: req.Method, Host: req.Host, Path: req.Path, Headers: req.Headers, DestinationPort: port, Peer: peer}
			var overrides map[string]*authz.Engine
			if t != nil {
				if r, ok := t.Match(req); ok {
					r.PickCluster(rnd)
					r.RewritePath(req.Path)
					r.RedirectLocation(req, "http", "a=b")
					if r.Retry != nil {
						r.Retry.RetriableStatus(503)
						r.Retry.Backoff(3)
					}
					overrides = r.Authz
				}
			}
			authz.Chain(ch.RBAC, overrides, ar)
			ar.Peer = spiffe.Identity{}
			authz.Chain(ch.RBAC, overrides, ar)
		}
	}
	for _, c := range snap.Clusters {
		for _, e := range c.Endpoints {
			snap.EndpointByIP(e.Address.Addr())
		}
		state.ServiceOfCluster(c.Name)
	}
	snap.EndpointByIP(netip.MustParseAddr("10.244.0.1"))
}

func clone[T any](s []T) []T { return append([]T(nil), s...) }

func marshalFirst[T proto.Message](ms []T) []byte {
	if len(ms) == 0 {
		return nil
	}
	b, err := proto.Marshal(ms[0])
	if err != nil {
		panic(err)
	}
	return b
}
