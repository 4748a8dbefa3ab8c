package model

import "istio.io/istio/pkg/workloadapi"

// Enrolled reports whether a pod's traffic is captured by ztunnel: the
// pod label istio.io/dataplane-mode wins (none opts out, ambient opts in),
// otherwise the namespace label decides. hostNetwork pods are never captured.
func Enrolled(nsLabels map[string]string, p *Pod) bool {
	if p.HostNetwork {
		return false
	}
	switch p.Labels[LabelDataplaneMode] {
	case DataplaneModeNone:
		return false
	case DataplaneModeAmbient:
		return true
	}
	return nsLabels[LabelDataplaneMode] == DataplaneModeAmbient
}

// TunnelProtocol returns the tunnel protocol and native_tunnel flag of a pod:
// HBONE for enrolled pods; pods labelled networking.istio.io/tunnel=http
// (waypoints) receive HBONE natively; NONE otherwise.
func TunnelProtocol(nsLabels map[string]string, p *Pod) (workloadapi.TunnelProtocol, bool) {
	if p.Labels[LabelTunnel] == "http" {
		return workloadapi.TunnelProtocol_HBONE, true
	}
	if Enrolled(nsLabels, p) {
		return workloadapi.TunnelProtocol_HBONE, false
	}
	return workloadapi.TunnelProtocol_NONE, false
}
