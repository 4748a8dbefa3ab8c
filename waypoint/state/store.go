package state

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/ambient-mesh/ambient/waypoint/router"
)

// Store holds the current Snapshot. Set* methods are for the one writer;
// Load is safe from any goroutine.
type Store struct {
	cur atomic.Pointer[Snapshot]

	mu        sync.Mutex // serialises writers
	version   uint64
	chains    map[uint32]*Chain
	defChain  *Chain
	routes    map[string]*router.Table
	clusters  map[string]*Cluster // without endpoints
	endpoints map[string][]*Endpoint
}

// NewStore returns a store holding an empty snapshot.
func NewStore() *Store {
	s := &Store{chains: map[uint32]*Chain{}, routes: map[string]*router.Table{},
		clusters: map[string]*Cluster{}, endpoints: map[string][]*Endpoint{}}
	s.cur.Store(empty())
	return s
}

// Load returns the current snapshot; it never changes.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Resources is a full set of waypoint resources; Build compiles one.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// SetListeners replaces all listeners. On error nothing changes.
func (s *Store) SetListeners(ls []*listenerv3.Listener) error {
	chains, def, err := compileListeners(ls)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chains, s.defChain = chains, def
	s.publishLocked()
	return nil
}

// SetRoutes replaces all route configurations. On error nothing changes.
func (s *Store) SetRoutes(rcs []*routev3.RouteConfiguration) error {
	routes := make(map[string]*router.Table, len(rcs))
	for _, rc := range rcs {
		t, err := router.Compile(rc)
		if err != nil {
			return fmt.Errorf("RouteConfiguration %q: %w", rc.GetName(), err)
		}
		routes[rc.Name] = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = routes
	s.publishLocked()
	return nil
}

// SetClusters replaces all clusters. On error nothing changes.
func (s *Store) SetClusters(cs []*clusterv3.Cluster) error {
	clusters := make(map[string]*Cluster, len(cs))
	inline := map[string][]*Endpoint{}
	for _, c := range cs {
		cc, eps, err := compileCluster(c)
		if err != nil {
			return err
		}
		clusters[cc.Name] = cc
		if eps != nil {
			inline[cc.Name] = eps
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters = clusters
	for name, eps := range inline {
		s.endpoints[name] = eps
	}
	s.publishLocked()
	return nil
}

// SetEndpoints replaces all ClusterLoadAssignments. On error nothing
// changes.
func (s *Store) SetEndpoints(las []*endpointv3.ClusterLoadAssignment) error {
	eps := make(map[string][]*Endpoint, len(las))
	for _, la := range las {
		e, err := compileAssignment(la)
		if err != nil {
			return err
		}
		eps[la.ClusterName] = e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = eps
	s.publishLocked()
	return nil
}

// Apply compiles a full set of resources and replaces everything at once;
// on error nothing changes.
func (s *Store) Apply(r Resources) error {
	snap, err := Build(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chains, s.defChain, s.routes = snap.Chains, snap.DefaultChain, snap.Routes
	s.clusters = map[string]*Cluster{}
	s.endpoints = map[string][]*Endpoint{}
	for name, c := range snap.Clusters {
		cc := *c
		cc.Endpoints = nil
		s.clusters[name] = &cc
		s.endpoints[name] = c.Endpoints
	}
	s.publishLocked()
	return nil
}

// Build compiles a full set of resources into a snapshot (version 1).
func Build(r Resources) (*Snapshot, error) {
	tmp := NewStore()
	for _, step := range []func() error{
		func() error { return tmp.SetListeners(r.Listeners) },
		func() error { return tmp.SetRoutes(r.Routes) },
		func() error { return tmp.SetClusters(r.Clusters) },
		func() error { return tmp.SetEndpoints(r.Endpoints) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	snap := tmp.Load()
	snap.Version = 1
	return snap, nil
}

// publishLocked joins the compiled parts into a new snapshot.
func (s *Store) publishLocked() {
	s.version++
	snap := &Snapshot{Version: s.version, Chains: s.chains, DefaultChain: s.defChain, Routes: s.routes,
		Clusters: make(map[string]*Cluster, len(s.clusters)), byIP: map[netip.Addr]*Endpoint{}}
	for name, c := range s.clusters {
		cc := *c
		cc.Endpoints = s.endpoints[name]
		snap.Clusters[name] = &cc
		for _, e := range cc.Endpoints {
			if _, dup := snap.byIP[e.Address.Addr()]; !dup {
				snap.byIP[e.Address.Addr()] = e
			}
		}
	}
	s.cur.Store(snap)
}
