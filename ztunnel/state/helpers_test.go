package state

import (
	"net/netip"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func ip(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

type wlOpt func(*workloadapi.Workload)

func wl(uid, ns string, addr string, opts ...wlOpt) *workloadapi.Address {
	w := &workloadapi.Workload{Uid: uid, Name: uid, Namespace: ns, TunnelProtocol: workloadapi.TunnelProtocol_HBONE}
	if addr != "" {
		w.Addresses = [][]byte{ip(addr)}
	}
	for _, o := range opts {
		o(w)
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

func inSvc(key string, ports ...uint32) wlOpt {
	return func(w *workloadapi.Workload) {
		if w.Services == nil {
			w.Services = map[string]*workloadapi.PortList{}
		}
		pl := &workloadapi.PortList{}
		for i := 0; i+1 < len(ports); i += 2 {
			pl.Ports = append(pl.Ports, &workloadapi.Port{ServicePort: ports[i], TargetPort: ports[i+1]})
		}
		w.Services[key] = pl
	}
}

func svc(ns, host string, vip string) *workloadapi.Address {
	s := &workloadapi.Service{Name: host, Namespace: ns, Hostname: host,
		Ports: []*workloadapi.Port{{ServicePort: 80, TargetPort: 8080}}}
	if vip != "" {
		s.Addresses = []*workloadapi.NetworkAddress{{Address: ip(vip)}}
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: s}}
}

func pol(ns, name string, scope security.Scope) *security.Authorization {
	return &security.Authorization{Name: name, Namespace: ns, Scope: scope}
}

func uids(ws []*Workload) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.UID)
	}
	return out
}

func epUIDs(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Workload.UID)
	}
	return out
}
