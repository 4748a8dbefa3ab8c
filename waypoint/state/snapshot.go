package state

import (
	"net/netip"
	"strings"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
)

// Snapshot is one consistent, immutable view of the waypoint's
// configuration. Never modify one; build a new one.
type Snapshot struct {
	// Version counts accepted updates (0: empty store).
	Version uint64
	// Chains holds the HTTP filter chains by the CONNECT authority port they
	// match; a chain without destination_port is DefaultChain.
	Chains       map[uint32]*Chain
	DefaultChain *Chain
	// Routes are the compiled RouteConfigurations by name.
	Routes map[string]*router.Table
	// Clusters by name, endpoints included (empty when no
	// ClusterLoadAssignment arrived yet).
	Clusters map[string]*Cluster
	// byIP finds the endpoint serving a pod IP (opaque passthrough).
	byIP map[netip.Addr]*Endpoint
}

// Chain is one HTTP filter chain of the waypoint listener.
type Chain struct {
	Name string
	Port uint32
	// RouteName is the RDS route configuration this chain routes with.
	RouteName string
	// RBAC are the chain's RBAC http filters in order.
	RBAC []authz.Filter
}

// LBPolicy is how a cluster spreads requests over its endpoints.
type LBPolicy uint8

// Load-balancing policies.
const (
	RoundRobin LBPolicy = iota
	LeastRequest
)

// Outlier is a cluster's outlier-detection setting: after Consecutive5xx
// consecutive 5xx answers or connect failures an endpoint is ejected for
// BaseEjection × (number of ejections so far), at most MaxEjectionPercent
// of the endpoints at once.
type Outlier struct {
	Consecutive5xx     uint32
	BaseEjection       time.Duration
	MaxEjectionPercent uint32
}

// Cluster is an upstream cluster with its endpoints.
type Cluster struct {
	Name string
	// HTTP2 is set when the cluster speaks HTTP/2 (h2c) upstream (gRPC).
	HTTP2          bool
	LB             LBPolicy
	ConnectTimeout time.Duration
	// Outlier is nil when the cluster configures none (the listener then
	// applies its default).
	Outlier   *Outlier
	Endpoints []*Endpoint
	// Service is the hostname part of an Istio cluster name
	// "outbound|port||hostname", else "".
	Service string
}

// Endpoint is one upstream pod, reached through an HBONE tunnel.
type Endpoint struct {
	// Address is the endpoint's socket address (pod IP:target port).
	Address netip.AddrPort
	// Tunnel is the HBONE peer to dial (pod IP:15008).
	Tunnel netip.AddrPort
	// Destination is the CONNECT authority to ask the tunnel for.
	Destination netip.AddrPort
	// Identity is the pod's expected SPIFFE identity (zero: unknown).
	Identity spiffe.Identity
	Node     string
	Healthy  bool
	// Weight is the load-balancing weight (1 unless set).
	Weight uint32
}

// Chain returns the filter chain serving a CONNECT authority port, or nil
// (an opaque TCP port).
func (s *Snapshot) Chain(port uint32) *Chain {
	if c, ok := s.Chains[port]; ok {
		return c
	}
	return s.DefaultChain
}

// EndpointByIP returns an endpoint whose pod IP is addr, or nil.
func (s *Snapshot) EndpointByIP(addr netip.Addr) *Endpoint {
	return s.byIP[addr.Unmap()]
}

// ServiceOfCluster returns the hostname of an Istio cluster name
// "outbound|<port>|<subset>|<hostname>", or "" for other names.
func ServiceOfCluster(name string) string {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return ""
	}
	return parts[3]
}

func empty() *Snapshot {
	return &Snapshot{Chains: map[uint32]*Chain{}, Routes: map[string]*router.Table{},
		Clusters: map[string]*Cluster{}, byIP: map[netip.Addr]*Endpoint{}}
}
