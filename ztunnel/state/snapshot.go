package state

import (
	"net/netip"
	"slices"
	"strings"

	"istio.io/istio/pkg/workloadapi/security"
)

// Snapshot is an immutable, internally consistent view of the mesh. All
// returned values are shared and must not be modified.
type Snapshot struct {
	version uint64

	workloads *cowMap[string, *Workload]  // by uid
	wlByAddr  *cowMap[NetAddr, *Workload] // by network/IP (not HOST_NETWORK)
	services  *cowMap[string, *Service]   // by namespace/hostname
	svcByAddr *cowMap[NetAddr, *Service]  // by network/VIP
	svcRanges []*Service                  // services with CIDR-ranged addresses (rare)
	// endpoints by service key; kept even for services not (yet) known.
	endpoints *cowMap[string, []Endpoint]

	policies *cowMap[string, *security.Authorization] // by resource name
	global   []*security.Authorization                // scope GLOBAL, sorted by name
	byNS     map[string][]*security.Authorization     // scope NAMESPACE, sorted by name
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		workloads: newCowMap[string, *Workload](hashString),
		wlByAddr:  newCowMap[NetAddr, *Workload](hashNetAddr),
		services:  newCowMap[string, *Service](hashString),
		svcByAddr: newCowMap[NetAddr, *Service](hashNetAddr),
		endpoints: newCowMap[string, []Endpoint](hashString),
		policies:  newCowMap[string, *security.Authorization](hashString),
		byNS:      map[string][]*security.Authorization{},
	}
}

// Version counts the updates applied to produce this snapshot.
func (s *Snapshot) Version() uint64 { return s.version }

// WorkloadByIP returns the workload with address ip on the default network.
func (s *Snapshot) WorkloadByIP(ip netip.Addr) *Workload {
	return s.WorkloadByNetworkIP("", ip)
}

// WorkloadByNetworkIP returns the workload with address ip on network.
func (s *Snapshot) WorkloadByNetworkIP(network string, ip netip.Addr) *Workload {
	w, _ := s.wlByAddr.get(NetAddr{Network: network, Addr: ip.Unmap()})
	return w
}

// WorkloadByUID returns the workload with the given uid.
func (s *Snapshot) WorkloadByUID(uid string) *Workload {
	w, _ := s.workloads.get(uid)
	return w
}

// ServiceByVIP returns the service reachable at ip on the default network.
func (s *Snapshot) ServiceByVIP(ip netip.Addr) *Service {
	return s.ServiceByNetworkVIP("", ip)
}

// ServiceByNetworkVIP returns the service reachable at ip on network: an
// exact VIP first, then the longest CIDR-ranged service address.
func (s *Snapshot) ServiceByNetworkVIP(network string, ip netip.Addr) *Service {
	ip = ip.Unmap()
	if svc, ok := s.svcByAddr.get(NetAddr{Network: network, Addr: ip}); ok {
		return svc
	}
	var best *Service
	bits := -1
	for _, svc := range s.svcRanges {
		for _, p := range svc.Prefixes {
			if p.Network == network && p.Prefix.Bits() > bits && p.Prefix.Contains(ip) {
				best, bits = svc, p.Prefix.Bits()
			}
		}
	}
	return best
}

// ServiceByHostname returns the service namespace/hostname.
func (s *Snapshot) ServiceByHostname(namespace, hostname string) *Service {
	return s.ServiceByKey(ServiceKey(namespace, hostname))
}

// ServiceByKey returns the service with key "namespace/hostname".
func (s *Snapshot) ServiceByKey(key string) *Service {
	svc, _ := s.services.get(key)
	return svc
}

// EndpointsOf returns the workloads whose services map lists svc, sorted by
// workload uid, healthy or not. The slice is shared: do not modify it.
func (s *Snapshot) EndpointsOf(svc *Service) []Endpoint {
	eps, _ := s.endpoints.get(svc.Key)
	return eps
}

// PoliciesFor returns the policies that apply to w: GLOBAL ones, NAMESPACE
// ones of w's namespace, and those named in w's authorization_policies.
func (s *Snapshot) PoliciesFor(w *Workload) []*security.Authorization {
	return s.AppendPoliciesFor(nil, w)
}

// AppendPoliciesFor is PoliciesFor appending to dst, to let hot paths reuse
// a buffer.
func (s *Snapshot) AppendPoliciesFor(dst []*security.Authorization, w *Workload) []*security.Authorization {
	dst = append(dst, s.global...)
	dst = append(dst, s.byNS[w.Namespace]...)
	for _, name := range w.Proto.GetAuthorizationPolicies() {
		p, ok := s.policies.get(name)
		if !ok {
			continue // not received yet; upstream ztunnel also skips it
		}
		if p.GetScope() == security.Scope_WORKLOAD_SELECTOR ||
			(p.GetScope() == security.Scope_NAMESPACE && p.GetNamespace() != w.Namespace) {
			dst = append(dst, p)
		}
	}
	return dst
}

// PolicyByName returns the policy with the given resource name.
func (s *Snapshot) PolicyByName(name string) *security.Authorization {
	p, _ := s.policies.get(name)
	return p
}

// Workloads returns all workloads sorted by uid (for config_dump).
func (s *Snapshot) Workloads() []*Workload {
	out := make([]*Workload, 0, s.workloads.len())
	s.workloads.each(func(_ string, w *Workload) { out = append(out, w) })
	slices.SortFunc(out, func(a, b *Workload) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// Services returns all services sorted by key (for config_dump).
func (s *Snapshot) Services() []*Service {
	out := make([]*Service, 0, s.services.len())
	s.services.each(func(_ string, v *Service) { out = append(out, v) })
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Policies returns all policies sorted by resource name (for config_dump).
func (s *Snapshot) Policies() []*security.Authorization {
	type kv struct {
		k string
		v *security.Authorization
	}
	all := make([]kv, 0, s.policies.len())
	s.policies.each(func(k string, v *security.Authorization) { all = append(all, kv{k, v}) })
	slices.SortFunc(all, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	out := make([]*security.Authorization, len(all))
	for i, e := range all {
		out[i] = e.v
	}
	return out
}
