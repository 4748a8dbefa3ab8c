package captureagent

import (
	"net/netip"
	"time"
)

// Istio's enrollment label and its values, and the annotation Istio's sidecar
// injector sets on pods that run a sidecar.
const (
	DataplaneModeLabel      = "istio.io/dataplane-mode"
	DataplaneModeAmbient    = "ambient"
	DataplaneModeNone       = "none"
	SidecarStatusAnnotation = "sidecar.istio.io/status"
)

// Pod phases that end a pod's life (its sandbox and veth are gone or going).
const (
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
)

// Namespace is the part of a Kubernetes Namespace the agent needs.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Pod is the part of a Kubernetes Pod the agent needs (see [TrimPod]).
type Pod struct {
	Namespace, Name string
	NodeName        string
	Labels          map[string]string
	Annotations     map[string]string // only those Enrolled reads (TrimPod)
	HostNetwork     bool
	// IPs are status.podIPs (status.podIP when podIPs is empty).
	IPs   []netip.Addr
	Phase string
	// DeletionTimestamp is set while the pod terminates gracefully.
	DeletionTimestamp *time.Time
}

// Terminal reports whether the pod has finished (Succeeded or Failed): its
// addresses may already belong to another pod.
func (p Pod) Terminal() bool {
	return p.Phase == PodSucceeded || p.Phase == PodFailed
}

// Enrolled reports whether pod's traffic must be captured, with Istio
// ambient's rules:
//   - a hostNetwork pod never (its traffic is the node's);
//   - a pod without addresses, or terminated (Succeeded/Failed), not;
//   - a pod with a sidecar (annotation sidecar.istio.io/status) not: sidecar
//     and ztunnel for one pod is not supported;
//   - pod label istio.io/dataplane-mode=none opts out;
//   - pod label istio.io/dataplane-mode=ambient enrolls the pod alone;
//   - otherwise the namespace label istio.io/dataplane-mode=ambient enrolls.
//
// A terminating pod (DeletionTimestamp set) stays enrolled until it is
// terminal or deleted, as in Istio: its connections drain through the mesh,
// never in plaintext.
func Enrolled(ns Namespace, pod Pod) bool {
	if pod.HostNetwork || len(pod.IPs) == 0 || pod.Terminal() {
		return false
	}
	if _, ok := pod.Annotations[SidecarStatusAnnotation]; ok {
		return false
	}
	switch pod.Labels[DataplaneModeLabel] {
	case DataplaneModeNone:
		return false
	case DataplaneModeAmbient:
		return true
	}
	return ns.Labels[DataplaneModeLabel] == DataplaneModeAmbient
}
