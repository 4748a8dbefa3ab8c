package captureagent

import (
	"cmp"
	"net/netip"
	"slices"

	"istio.io/istio/pkg/workloadapi"
)

// Static is a fixed set of pods and namespaces for an agent that runs
// without Kubernetes ([Options.Static]).
type Static struct {
	Pods       []Pod
	Namespaces map[string]Namespace
}

// StaticFromWorkloads builds the static pods of a local config (ztunnel
// --local-config): every workload is a running pod on its node; one that
// speaks HBONE is enrolled (as if labelled istio.io/dataplane-mode=ambient),
// one that does not is attached but not enrolled, like an unlabelled pod.
// Services and addresses that do not parse are ignored.
func StaticFromWorkloads(addrs map[string]*workloadapi.Address) Static {
	st := Static{Namespaces: map[string]Namespace{}}
	for _, a := range addrs {
		w := a.GetWorkload()
		if w == nil {
			continue
		}
		p := Pod{
			Namespace:   w.GetNamespace(),
			Name:        w.GetName(),
			NodeName:    w.GetNode(),
			HostNetwork: w.GetNetworkMode() == workloadapi.NetworkMode_HOST_NETWORK,
			Phase:       "Running",
		}
		if w.GetTunnelProtocol() == workloadapi.TunnelProtocol_HBONE {
			p.Labels = map[string]string{DataplaneModeLabel: DataplaneModeAmbient}
		}
		for _, b := range w.GetAddresses() {
			if ip, ok := netip.AddrFromSlice(b); ok {
				p.IPs = append(p.IPs, ip.Unmap())
			}
		}
		st.Pods = append(st.Pods, p)
		if _, ok := st.Namespaces[p.Namespace]; !ok {
			st.Namespaces[p.Namespace] = Namespace{Name: p.Namespace}
		}
	}
	slices.SortFunc(st.Pods, func(x, y Pod) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return st
}
