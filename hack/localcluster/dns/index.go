package dns

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// DefaultDomain is the cluster domain.
const DefaultDomain = "cluster.local"

// Index is an immutable snapshot of every name in the cluster domain. Names
// are lower case, absolute (trailing dot).
type Index struct {
	domain string // e.g. "cluster.local."
	names  map[string]*node
}

// node is what one name holds; a node with no records is an empty
// non-terminal (NODATA, not NXDOMAIN).
type node struct {
	a, aaaa []netip.Addr
	cname   string
	srv     []srv
}

type srv struct {
	port   uint16
	target string
}

// Domain returns the index's zone, absolute ("cluster.local.").
func (ix *Index) Domain() string { return ix.domain }

// Fqdn makes name absolute and lower case.
func Fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// BuildIndex computes the names of domain from Services and EndpointSlices.
// It is pure; nil entries are skipped.
func BuildIndex(domain string, svcs []*corev1.Service, eps []*discoveryv1.EndpointSlice) *Index {
	ix := &Index{domain: Fqdn(domain), names: map[string]*node{}}
	ix.get(ix.domain)
	ix.get("svc." + ix.domain)
	ix.get("pod." + ix.domain)
	slicesOf := map[string][]*discoveryv1.EndpointSlice{} // ns/svc → slices
	for _, s := range eps {
		if s == nil {
			continue
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			slicesOf[k] = append(slicesOf[k], s)
		}
	}
	for _, svc := range svcs {
		if svc == nil || !isLabel(svc.Name) || !isLabel(svc.Namespace) {
			continue
		}
		base := Fqdn(svc.Name + "." + svc.Namespace + ".svc." + ix.domain)
		n := ix.get(base)
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			if svc.Spec.ExternalName != "" {
				n.cname = Fqdn(svc.Spec.ExternalName)
			}
		case svc.Spec.ClusterIP == corev1.ClusterIPNone:
			ix.addHeadless(base, n, slicesOf[svc.Namespace+"/"+svc.Name])
		default:
			ips := svc.Spec.ClusterIPs
			if len(ips) == 0 && svc.Spec.ClusterIP != "" {
				ips = []string{svc.Spec.ClusterIP}
			}
			for _, s := range ips {
				if a, err := netip.ParseAddr(s); err == nil {
					n.add(a)
				}
			}
			for _, p := range svc.Spec.Ports {
				if isLabel(p.Name) {
					ix.addSRV(base, p.Name, p.Protocol, uint16(p.Port), base)
				}
			}
		}
	}
	for _, n := range ix.names {
		slices.SortFunc(n.a, netip.Addr.Compare)
		n.a = slices.Compact(n.a)
		slices.SortFunc(n.aaaa, netip.Addr.Compare)
		n.aaaa = slices.Compact(n.aaaa)
		slices.SortFunc(n.srv, func(x, y srv) int {
			if c := strings.Compare(x.target, y.target); c != 0 {
				return c
			}
			return int(x.port) - int(y.port)
		})
		n.srv = slices.Compact(n.srv)
	}
	return ix
}

// addHeadless adds the ready endpoints of a headless Service: each address
// under base, and under <hostname-or-dashed-ip>.base; SRV per named port.
func (ix *Index) addHeadless(base string, n *node, eps []*discoveryv1.EndpointSlice) {
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, as := range ep.Addresses {
				a, err := netip.ParseAddr(as)
				if err != nil {
					continue
				}
				n.add(a)
				label := DashedIP(a)
				if ep.Hostname != nil && isLabel(*ep.Hostname) {
					label = strings.ToLower(*ep.Hostname)
				}
				target := label + "." + base
				ix.get(target).add(a)
				for _, p := range s.Ports {
					if p.Name != nil && isLabel(*p.Name) && p.Port != nil {
						proto := corev1.ProtocolTCP
						if p.Protocol != nil {
							proto = *p.Protocol
						}
						ix.addSRV(base, *p.Name, proto, uint16(*p.Port), target)
					}
				}
			}
		}
	}
}

func (ix *Index) addSRV(base, port string, proto corev1.Protocol, num uint16, target string) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	name := "_" + strings.ToLower(port) + "._" + strings.ToLower(string(proto)) + "." + base
	n := ix.get(name)
	n.srv = append(n.srv, srv{port: num, target: target})
}

func (n *node) add(a netip.Addr) {
	a = a.Unmap()
	if a.Is4() {
		n.a = append(n.a, a)
	} else {
		n.aaaa = append(n.aaaa, a)
	}
}

// get returns name's node, creating it and its parents up to the zone apex
// (empty non-terminals).
func (ix *Index) get(name string) *node {
	n, ok := ix.names[name]
	if ok {
		return n
	}
	n = &node{}
	ix.names[name] = n
	if name != ix.domain {
		if i := strings.IndexByte(name, '.'); i >= 0 && strings.HasSuffix(name[i+1:], ix.domain) {
			ix.get(name[i+1:])
		}
	}
	return n
}

// lookup returns name's node (name absolute, lower case).
func (ix *Index) lookup(name string) (*node, bool) {
	n, ok := ix.names[name]
	return n, ok
}

// DashedIP renders a as a DNS label: 10.244.1.5 → 10-244-1-5,
// fd00::1 → fd00--1.
func DashedIP(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

// ParseDashedIP is the inverse of DashedIP (also accepting the fully
// expanded IPv6 form); ok is false for labels that are no address.
func ParseDashedIP(label string) (netip.Addr, bool) {
	if strings.Count(label, "-") == 3 {
		if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && a.Is4() {
			return a, true
		}
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err == nil && a.Is6() && a.Zone() == "" {
		return a, true
	}
	return netip.Addr{}, false
}

// isLabel reports whether s is a usable DNS label (RFC 1123 style, also
// accepting underscores and upper case, which the API server rejects anyway).
func isLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
