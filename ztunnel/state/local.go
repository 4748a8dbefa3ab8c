package state

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
	"sigs.k8s.io/yaml"
)

// LocalConfig is the file format of `ztunnel --local-config` (YAML or JSON),
// modelled on upstream ztunnel's local config. See testdata/local.yaml.
type LocalConfig struct {
	Workloads []LocalWorkload `json:"workloads"`
	Services  []LocalService  `json:"services"`
	Policies  []LocalPolicy   `json:"policies"`
}

// LocalWorkload is a workload in a local config file.
type LocalWorkload struct {
	UID            string `json:"uid"`
	Name           string `json:"name"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	TrustDomain    string `json:"trustDomain"`
	// Addresses are IPs ("10.0.1.5").
	Addresses []string `json:"addresses"`
	Hostname  string   `json:"hostname"`
	Network   string   `json:"network"`
	Node      string   `json:"node"`
	// Protocol is HBONE or NONE (default NONE, as in the proto).
	Protocol string `json:"protocol"`
	// Status is HEALTHY (default) or UNHEALTHY.
	Status      string `json:"status"`
	HostNetwork bool   `json:"hostNetwork"`
	// Capacity is the load-balancing weight (default 1).
	Capacity *uint32       `json:"capacity"`
	Waypoint *LocalGateway `json:"waypoint"`
	// Services maps "namespace/hostname" to service port → target port.
	Services map[string]map[uint16]uint16 `json:"services"`
	// AuthorizationPolicies names selector-scoped policies ("ns/name").
	AuthorizationPolicies []string `json:"authorizationPolicies"`
}

// LocalGateway is a waypoint reference: a service "namespace/hostname" or
// an IP address, and the HBONE port (default 15008).
type LocalGateway struct {
	Hostname string `json:"hostname"`
	Address  string `json:"address"`
	Port     uint32 `json:"port"`
}

// LocalService is a service in a local config file.
type LocalService struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Hostname  string `json:"hostname"`
	// VIPs are "ip", "network/ip" or a CIDR "ip/len".
	VIPs []string `json:"vips"`
	// Ports maps service port to target port (0: the endpoint's).
	Ports    map[uint16]uint16 `json:"ports"`
	Waypoint *LocalGateway     `json:"waypoint"`
	// Visibility is PUBLIC (default) or NAMESPACE.
	Visibility string `json:"visibility"`
}

// LocalPolicy is an L4 authorization policy in a local config file, shaped
// like istio.security.Authorization.
type LocalPolicy struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Scope is GLOBAL (default), NAMESPACE or WORKLOAD_SELECTOR.
	Scope string `json:"scope"`
	// Action is ALLOW (default) or DENY.
	Action string       `json:"action"`
	DryRun bool         `json:"dryRun"`
	Groups []LocalGroup `json:"groups"`
}

// LocalGroup is OR-ed with the other groups; its rules are AND-ed.
type LocalGroup struct {
	Rules []LocalRules `json:"rules"`
}

// LocalRules holds OR-ed matches.
type LocalRules struct {
	Matches []LocalMatch `json:"matches"`
}

// LocalMatch mirrors security.Match. String matches use Istio's syntax:
// "*" is presence, "foo*" a prefix, "*foo" a suffix, anything else exact.
// Service accounts are "namespace/name"; IPs are addresses or CIDRs.
type LocalMatch struct {
	Namespaces          []string `json:"namespaces"`
	NotNamespaces       []string `json:"notNamespaces"`
	ServiceAccounts     []string `json:"serviceAccounts"`
	NotServiceAccounts  []string `json:"notServiceAccounts"`
	Principals          []string `json:"principals"`
	NotPrincipals       []string `json:"notPrincipals"`
	SourceIPs           []string `json:"sourceIps"`
	NotSourceIPs        []string `json:"notSourceIps"`
	DestinationIPs      []string `json:"destinationIps"`
	NotDestinationIPs   []string `json:"notDestinationIps"`
	DestinationPorts    []uint32 `json:"destinationPorts"`
	NotDestinationPorts []uint32 `json:"notDestinationPorts"`
}

// LoadLocalConfig reads a local config file and converts it to xDS
// resources keyed by resource name, ready for Store.ReplaceAddresses and
// Store.ReplaceAuthorizations (which validate them further). Unknown fields
// are an error naming the field.
func LoadLocalConfig(path string) (map[string]*workloadapi.Address, map[string]*security.Authorization, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read local config: %w", err)
	}
	addrs, pols, err := ParseLocalConfig(data)
	if err != nil {
		return nil, nil, fmt.Errorf("local config %s: %w", path, err)
	}
	return addrs, pols, nil
}

// ParseLocalConfig is LoadLocalConfig on the file's contents.
func ParseLocalConfig(data []byte) (map[string]*workloadapi.Address, map[string]*security.Authorization, error) {
	var cfg LocalConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decode: %w", err)
	}
	addrs := map[string]*workloadapi.Address{}
	for i, lw := range cfg.Workloads {
		w, err := lw.proto()
		if err != nil {
			return nil, nil, fmt.Errorf("workloads[%d] (%s): %w", i, lw.UID, err)
		}
		if _, dup := addrs[w.Uid]; dup {
			return nil, nil, fmt.Errorf("workloads[%d]: duplicate uid %q", i, w.Uid)
		}
		addrs[w.Uid] = &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
	}
	for i, ls := range cfg.Services {
		s, err := ls.proto()
		if err != nil {
			return nil, nil, fmt.Errorf("services[%d] (%s/%s): %w", i, ls.Namespace, ls.Hostname, err)
		}
		key := ServiceKey(s.Namespace, s.Hostname)
		if _, dup := addrs[key]; dup {
			return nil, nil, fmt.Errorf("services[%d]: duplicate resource name %q", i, key)
		}
		addrs[key] = &workloadapi.Address{Type: &workloadapi.Address_Service{Service: s}}
	}
	pols := map[string]*security.Authorization{}
	for i, lp := range cfg.Policies {
		p, err := lp.proto()
		if err != nil {
			return nil, nil, fmt.Errorf("policies[%d] (%s/%s): %w", i, lp.Namespace, lp.Name, err)
		}
		key := p.Namespace + "/" + p.Name
		if _, dup := pols[key]; dup {
			return nil, nil, fmt.Errorf("policies[%d]: duplicate name %q", i, key)
		}
		pols[key] = p
	}
	return addrs, pols, nil
}

func enumValue(field, s string, values map[string]int32, def int32) (int32, error) {
	if s == "" {
		return def, nil
	}
	v, ok := values[strings.ToUpper(s)]
	if !ok {
		names := make([]string, 0, len(values))
		for n := range values {
			names = append(names, n)
		}
		slices.Sort(names)
		return 0, fmt.Errorf("%s: unknown value %q (want one of %s)", field, s, strings.Join(names, ", "))
	}
	return v, nil
}

func portList(m map[uint16]uint16) []*workloadapi.Port {
	keys := make([]uint16, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*workloadapi.Port, 0, len(keys))
	for _, k := range keys {
		out = append(out, &workloadapi.Port{ServicePort: uint32(k), TargetPort: uint32(m[k])})
	}
	return out
}

func (lw LocalWorkload) proto() (*workloadapi.Workload, error) {
	w := &workloadapi.Workload{
		Uid:                   lw.UID,
		Name:                  lw.Name,
		Namespace:             lw.Namespace,
		ServiceAccount:        lw.ServiceAccount,
		TrustDomain:           lw.TrustDomain,
		Hostname:              lw.Hostname,
		Network:               lw.Network,
		Node:                  lw.Node,
		AuthorizationPolicies: lw.AuthorizationPolicies,
	}
	for i, a := range lw.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		w.Addresses = append(w.Addresses, ip.AsSlice())
	}
	p, err := enumValue("protocol", lw.Protocol, workloadapi.TunnelProtocol_value, 0)
	if err != nil {
		return nil, err
	}
	w.TunnelProtocol = workloadapi.TunnelProtocol(p)
	st, err := enumValue("status", lw.Status, workloadapi.WorkloadStatus_value, 0)
	if err != nil {
		return nil, err
	}
	w.Status = workloadapi.WorkloadStatus(st)
	if lw.HostNetwork {
		w.NetworkMode = workloadapi.NetworkMode_HOST_NETWORK
	}
	if lw.Capacity != nil {
		w.Capacity = wrapperspb.UInt32(*lw.Capacity)
	}
	if lw.Waypoint != nil {
		g, err := lw.Waypoint.proto()
		if err != nil {
			return nil, fmt.Errorf("waypoint: %w", err)
		}
		w.Waypoint = g
	}
	if len(lw.Services) > 0 {
		w.Services = map[string]*workloadapi.PortList{}
		for key, ports := range lw.Services {
			w.Services[key] = &workloadapi.PortList{Ports: portList(ports)}
		}
	}
	return w, nil
}

func (lg LocalGateway) proto() (*workloadapi.GatewayAddress, error) {
	g := &workloadapi.GatewayAddress{HboneMtlsPort: lg.Port}
	switch {
	case lg.Hostname != "" && lg.Address != "":
		return nil, fmt.Errorf("set one of hostname and address, not both")
	case lg.Hostname != "":
		ns, host, ok := strings.Cut(lg.Hostname, "/")
		if !ok {
			return nil, fmt.Errorf("hostname %q: want namespace/hostname", lg.Hostname)
		}
		g.Destination = &workloadapi.GatewayAddress_Hostname{Hostname: &workloadapi.NamespacedHostname{Namespace: ns, Hostname: host}}
	case lg.Address != "":
		ip, err := netip.ParseAddr(lg.Address)
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		g.Destination = &workloadapi.GatewayAddress_Address{Address: &workloadapi.NetworkAddress{Address: ip.AsSlice()}}
	default:
		return nil, fmt.Errorf("one of hostname and address is required")
	}
	return g, nil
}

func (ls LocalService) proto() (*workloadapi.Service, error) {
	s := &workloadapi.Service{
		Name:      ls.Name,
		Namespace: ls.Namespace,
		Hostname:  ls.Hostname,
		Ports:     portList(ls.Ports),
	}
	for i, v := range ls.VIPs {
		na, err := parseVIP(v)
		if err != nil {
			return nil, fmt.Errorf("vips[%d]: %w", i, err)
		}
		s.Addresses = append(s.Addresses, na)
	}
	if ls.Waypoint != nil {
		g, err := ls.Waypoint.proto()
		if err != nil {
			return nil, fmt.Errorf("waypoint: %w", err)
		}
		s.Waypoint = g
	}
	vis, err := enumValue("visibility", ls.Visibility, workloadapi.Service_Visibility_value, 0)
	if err != nil {
		return nil, err
	}
	s.Visibility = workloadapi.Service_Visibility(vis)
	return s, nil
}

// parseVIP parses "ip", "ip/len" or "network/ip[/len]".
func parseVIP(v string) (*workloadapi.NetworkAddress, error) {
	network, rest := "", v
	if p, err := netip.ParsePrefix(v); err == nil {
		l := uint32(p.Bits())
		return &workloadapi.NetworkAddress{Address: p.Addr().AsSlice(), Length: &l}, nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		network, rest, _ = strings.Cut(v, "/")
	}
	if p, err := netip.ParsePrefix(rest); err == nil {
		l := uint32(p.Bits())
		return &workloadapi.NetworkAddress{Network: network, Address: p.Addr().AsSlice(), Length: &l}, nil
	}
	ip, err := netip.ParseAddr(rest)
	if err != nil {
		return nil, fmt.Errorf("%q: want ip, ip/len or network/ip: %w", v, err)
	}
	return &workloadapi.NetworkAddress{Network: network, Address: ip.AsSlice()}, nil
}

func (lp LocalPolicy) proto() (*security.Authorization, error) {
	p := &security.Authorization{Name: lp.Name, Namespace: lp.Namespace, DryRun: lp.DryRun}
	sc, err := enumValue("scope", lp.Scope, security.Scope_value, 0)
	if err != nil {
		return nil, err
	}
	p.Scope = security.Scope(sc)
	ac, err := enumValue("action", lp.Action, security.Action_value, 0)
	if err != nil {
		return nil, err
	}
	p.Action = security.Action(ac)
	for gi, lg := range lp.Groups {
		g := &security.Group{}
		for ri, lr := range lg.Rules {
			r := &security.Rules{}
			for mi, lm := range lr.Matches {
				m, err := lm.proto()
				if err != nil {
					return nil, fmt.Errorf("groups[%d].rules[%d].matches[%d].%w", gi, ri, mi, err)
				}
				r.Matches = append(r.Matches, m)
			}
			g.Rules = append(g.Rules, r)
		}
		p.Groups = append(p.Groups, g)
	}
	return p, nil
}

func (lm LocalMatch) proto() (*security.Match, error) {
	m := &security.Match{
		Namespaces:          stringMatches(lm.Namespaces),
		NotNamespaces:       stringMatches(lm.NotNamespaces),
		Principals:          stringMatches(lm.Principals),
		NotPrincipals:       stringMatches(lm.NotPrincipals),
		DestinationPorts:    lm.DestinationPorts,
		NotDestinationPorts: lm.NotDestinationPorts,
	}
	var err error
	if m.ServiceAccounts, err = serviceAccounts("serviceAccounts", lm.ServiceAccounts); err != nil {
		return nil, err
	}
	if m.NotServiceAccounts, err = serviceAccounts("notServiceAccounts", lm.NotServiceAccounts); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		in   []string
		out  *[]*security.Address
	}{
		{"sourceIps", lm.SourceIPs, &m.SourceIps},
		{"notSourceIps", lm.NotSourceIPs, &m.NotSourceIps},
		{"destinationIps", lm.DestinationIPs, &m.DestinationIps},
		{"notDestinationIps", lm.NotDestinationIPs, &m.NotDestinationIps},
	} {
		for i, s := range f.in {
			a, err := policyAddress(s)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", f.name, i, err)
			}
			*f.out = append(*f.out, a)
		}
	}
	return m, nil
}

func policyAddress(s string) (*security.Address, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return &security.Address{Address: p.Addr().AsSlice(), Length: uint32(p.Bits())}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q: want an IP or CIDR: %w", s, err)
	}
	return &security.Address{Address: ip.AsSlice(), Length: uint32(ip.BitLen())}, nil
}

func serviceAccounts(field string, in []string) ([]*security.ServiceAccountMatch, error) {
	var out []*security.ServiceAccountMatch
	for i, s := range in {
		ns, sa, ok := strings.Cut(s, "/")
		if !ok || ns == "" || sa == "" {
			return nil, fmt.Errorf("%s[%d]: %q: want namespace/serviceaccount", field, i, s)
		}
		out = append(out, &security.ServiceAccountMatch{Namespace: ns, ServiceAccount: sa})
	}
	return out, nil
}

// stringMatches converts Istio-syntax strings: "*" presence, "foo*"
// prefix, "*foo" suffix, otherwise exact.
func stringMatches(in []string) []*security.StringMatch {
	var out []*security.StringMatch
	for _, s := range in {
		var m security.StringMatch
		switch {
		case s == "*":
			m.MatchType = &security.StringMatch_Presence{Presence: &emptypb.Empty{}}
		case strings.HasSuffix(s, "*"):
			m.MatchType = &security.StringMatch_Prefix{Prefix: strings.TrimSuffix(s, "*")}
		case strings.HasPrefix(s, "*"):
			m.MatchType = &security.StringMatch_Suffix{Suffix: strings.TrimPrefix(s, "*")}
		default:
			m.MatchType = &security.StringMatch_Exact{Exact: s}
		}
		out = append(out, &m)
	}
	return out
}
