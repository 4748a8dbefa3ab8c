package state

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// DefaultHBONEPort is the HBONE port of ztunnels and waypoints, used when a
// GatewayAddress leaves hbone_mtls_port unset.
const DefaultHBONEPort = 15008

// DefaultServiceAccount is the service account of a workload that elides it.
const DefaultServiceAccount = "default"

// Workload is a validated, parsed workload. It is immutable: it and the proto
// it wraps are shared between snapshots and must not be modified.
type Workload struct {
	// Proto is the resource as received.
	Proto *workloadapi.Workload

	UID       string
	Name      string
	Namespace string
	Node      string
	Network   string
	// Addrs are the workload's IPs (none for a hostname-only workload).
	Addrs []netip.Addr
	// Identity is the SPIFFE identity, with the trust domain and service
	// account defaulted as upstream ztunnel does.
	Identity spiffe.Identity
	Protocol workloadapi.TunnelProtocol
	Healthy  bool
	// Waypoint is the workload-bound waypoint, nil if none.
	Waypoint *Gateway
	// Capacity is the load-balancing weight (default 1).
	Capacity uint32
	// HostNetwork workloads share their IP with the node and are not
	// indexed by IP.
	HostNetwork bool
}

// HBONE reports whether the workload accepts HBONE (is enrolled in the mesh).
func (w *Workload) HBONE() bool { return w.Protocol == workloadapi.TunnelProtocol_HBONE }

// HasAddr reports whether ip is one of the workload's addresses.
func (w *Workload) HasAddr(ip netip.Addr) bool {
	for _, a := range w.Addrs {
		if a == ip {
			return true
		}
	}
	return false
}

// Gateway is a parsed GatewayAddress (a waypoint or network gateway): either
// a service hostname or an address, and the HBONE port.
type Gateway struct {
	// Namespace and Hostname are set when the gateway is named by hostname.
	Namespace, Hostname string
	// Addr is set when the gateway is named by address.
	Addr NetAddr
	// Port is the HBONE mTLS port (DefaultHBONEPort when unset).
	Port uint16
}

// IsHostname reports whether the gateway is named by a service hostname.
func (g *Gateway) IsHostname() bool { return g.Hostname != "" }

// String is for logs and errors.
func (g *Gateway) String() string {
	if g.IsHostname() {
		return fmt.Sprintf("%s/%s:%d", g.Namespace, g.Hostname, g.Port)
	}
	return netip.AddrPortFrom(g.Addr.Addr, g.Port).String()
}

// Service is a validated, parsed service. Immutable, like Workload.
type Service struct {
	Proto *workloadapi.Service

	// Key is "namespace/hostname", the xDS resource name.
	Key       string
	Name      string
	Namespace string
	Hostname  string
	// VIPs are host addresses; Prefixes are CIDR-ranged addresses.
	VIPs     []NetAddr
	Prefixes []NetPrefix
	// Ports maps service port to target port (0: use the endpoint's).
	Ports map[uint16]uint16
	// Waypoint is the service's waypoint, nil if none.
	Waypoint *Gateway
	// WeightedWaypoints, when non-empty, replaces Waypoint for clients that
	// understand it; weights are relative.
	WeightedWaypoints []WeightedGateway
}

// NetPrefix is a CIDR range on a network.
type NetPrefix struct {
	Network string
	Prefix  netip.Prefix
}

// WeightedGateway is one entry of Service.WeightedWaypoints.
type WeightedGateway struct {
	Gateway *Gateway
	Weight  uint32
}

// ServiceKey returns the "namespace/hostname" key of a service.
func ServiceKey(namespace, hostname string) string { return namespace + "/" + hostname }

// Endpoint is a workload backing a service, with the workload's port
// mapping for that service (nil: none given).
type Endpoint struct {
	Workload *Workload
	Ports    *workloadapi.PortList
}

// TargetPort returns the endpoint's target port for a service port.
func (e Endpoint) TargetPort(servicePort uint16) (uint16, bool) {
	for _, p := range e.Ports.GetPorts() {
		if p.GetServicePort() == uint32(servicePort) {
			return uint16(p.GetTargetPort()), true
		}
	}
	return 0, false
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid resource")

func invalid(kind, name, field, format string, args ...any) error {
	return fmt.Errorf("%s %q: field %s: %s: %w", kind, name, field, fmt.Sprintf(format, args...), ErrInvalid)
}

func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) != 4 && len(b) != 16 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(b)
	return a.Unmap(), ok
}

// ParseWorkload validates a workload resource named name (which must equal
// its uid, as istiod sends it).
func ParseWorkload(name string, p *workloadapi.Workload) (*Workload, error) {
	const kind = "workload"
	if p.GetUid() == "" {
		return nil, invalid(kind, name, "uid", "missing")
	}
	if name != p.GetUid() {
		return nil, invalid(kind, name, "uid", "%q differs from the resource name", p.GetUid())
	}
	w := &Workload{
		Proto:       p,
		UID:         p.GetUid(),
		Name:        p.GetName(),
		Namespace:   p.GetNamespace(),
		Node:        p.GetNode(),
		Network:     p.GetNetwork(),
		Protocol:    p.GetTunnelProtocol(),
		Healthy:     p.GetStatus() == workloadapi.WorkloadStatus_HEALTHY,
		Capacity:    1,
		HostNetwork: p.GetNetworkMode() == workloadapi.NetworkMode_HOST_NETWORK,
	}
	for i, b := range p.GetAddresses() {
		a, ok := parseIP(b)
		if !ok {
			return nil, invalid(kind, name, fmt.Sprintf("addresses[%d]", i), "want 4 or 16 bytes, got %d", len(b))
		}
		w.Addrs = append(w.Addrs, a)
	}
	if _, ok := workloadapi.TunnelProtocol_name[int32(w.Protocol)]; !ok {
		return nil, invalid(kind, name, "tunnel_protocol", "unknown value %d", w.Protocol)
	}
	if _, ok := workloadapi.WorkloadStatus_name[int32(p.GetStatus())]; !ok {
		return nil, invalid(kind, name, "status", "unknown value %d", p.GetStatus())
	}
	if c := p.GetCapacity(); c != nil {
		w.Capacity = c.GetValue()
	}
	td, sa := p.GetTrustDomain(), p.GetServiceAccount()
	if td == "" {
		td = spiffe.DefaultTrustDomain
	}
	if sa == "" {
		sa = DefaultServiceAccount
	}
	w.Identity = spiffe.Identity{TrustDomain: td, Namespace: p.GetNamespace(), ServiceAccount: sa}
	if p.GetWaypoint() != nil {
		g, err := parseGateway(p.GetWaypoint())
		if err != nil {
			return nil, fmt.Errorf("workload %q: field waypoint: %w", name, err)
		}
		w.Waypoint = g
	}
	for key := range p.GetServices() {
		if ns, host, ok := strings.Cut(key, "/"); !ok || ns == "" || host == "" {
			return nil, invalid(kind, name, "services", "key %q is not namespace/hostname", key)
		}
	}
	for key, pl := range p.GetServices() {
		for i, port := range pl.GetPorts() {
			if err := checkPort(port); err != nil {
				return nil, invalid(kind, name, fmt.Sprintf("services[%s].ports[%d]", key, i), "%v", err)
			}
		}
	}
	return w, nil
}

func checkPort(p *workloadapi.Port) error {
	if p.GetServicePort() == 0 || p.GetServicePort() > 65535 {
		return fmt.Errorf("service_port %d out of range 1-65535", p.GetServicePort())
	}
	if p.GetTargetPort() > 65535 {
		return fmt.Errorf("target_port %d out of range 0-65535", p.GetTargetPort())
	}
	return nil
}

// ParseService validates a service resource named name (which must be
// "namespace/hostname").
func ParseService(name string, p *workloadapi.Service) (*Service, error) {
	const kind = "service"
	if p.GetHostname() == "" {
		return nil, invalid(kind, name, "hostname", "missing")
	}
	if p.GetNamespace() == "" {
		return nil, invalid(kind, name, "namespace", "missing")
	}
	s := &Service{
		Proto:     p,
		Key:       ServiceKey(p.GetNamespace(), p.GetHostname()),
		Name:      p.GetName(),
		Namespace: p.GetNamespace(),
		Hostname:  p.GetHostname(),
		Ports:     make(map[uint16]uint16, len(p.GetPorts())),
	}
	if name != s.Key {
		return nil, invalid(kind, name, "namespace/hostname", "%q differs from the resource name", s.Key)
	}
	for i, na := range p.GetAddresses() {
		a, ok := parseIP(na.GetAddress())
		if !ok {
			return nil, invalid(kind, name, fmt.Sprintf("addresses[%d].address", i), "want 4 or 16 bytes, got %d", len(na.GetAddress()))
		}
		if na.Length == nil || int(na.GetLength()) == a.BitLen() {
			s.VIPs = append(s.VIPs, NetAddr{Network: na.GetNetwork(), Addr: a})
			continue
		}
		if int(na.GetLength()) > a.BitLen() {
			return nil, invalid(kind, name, fmt.Sprintf("addresses[%d].length", i), "%d exceeds %d bits", na.GetLength(), a.BitLen())
		}
		s.Prefixes = append(s.Prefixes, NetPrefix{Network: na.GetNetwork(), Prefix: netip.PrefixFrom(a, int(na.GetLength())).Masked()})
	}
	for i, port := range p.GetPorts() {
		if err := checkPort(port); err != nil {
			return nil, invalid(kind, name, fmt.Sprintf("ports[%d]", i), "%v", err)
		}
		s.Ports[uint16(port.GetServicePort())] = uint16(port.GetTargetPort())
	}
	if p.GetWaypoint() != nil {
		g, err := parseGateway(p.GetWaypoint())
		if err != nil {
			return nil, fmt.Errorf("service %q: field waypoint: %w", name, err)
		}
		s.Waypoint = g
	}
	for i, ww := range p.GetWeightedWaypoints() {
		g, err := parseGateway(ww.GetDestination())
		if err != nil {
			return nil, fmt.Errorf("service %q: field weighted_waypoints[%d]: %w", name, i, err)
		}
		s.WeightedWaypoints = append(s.WeightedWaypoints, WeightedGateway{Gateway: g, Weight: ww.GetWeight()})
	}
	return s, nil
}

func parseGateway(p *workloadapi.GatewayAddress) (*Gateway, error) {
	g := &Gateway{Port: DefaultHBONEPort}
	if port := p.GetHboneMtlsPort(); port != 0 {
		if port > 65535 {
			return nil, fmt.Errorf("hbone_mtls_port %d out of range: %w", port, ErrInvalid)
		}
		g.Port = uint16(port)
	}
	switch d := p.GetDestination().(type) {
	case *workloadapi.GatewayAddress_Hostname:
		if d.Hostname.GetNamespace() == "" || d.Hostname.GetHostname() == "" {
			return nil, fmt.Errorf("hostname: namespace and hostname are required: %w", ErrInvalid)
		}
		g.Namespace, g.Hostname = d.Hostname.GetNamespace(), d.Hostname.GetHostname()
	case *workloadapi.GatewayAddress_Address:
		a, ok := parseIP(d.Address.GetAddress())
		if !ok {
			return nil, fmt.Errorf("address: want 4 or 16 bytes, got %d: %w", len(d.Address.GetAddress()), ErrInvalid)
		}
		g.Addr = NetAddr{Network: d.Address.GetNetwork(), Addr: a}
	default:
		return nil, fmt.Errorf("destination: missing: %w", ErrInvalid)
	}
	return g, nil
}
