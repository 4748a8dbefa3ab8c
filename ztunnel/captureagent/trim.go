package captureagent

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrimPod converts a Kubernetes Pod to the fields the agent uses. Addresses
// that do not parse are left out.
func TrimPod(p *corev1.Pod) Pod {
	out := Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		NodeName:    p.Spec.NodeName,
		Labels:      p.Labels,
		Annotations: keptAnnotations(p.Annotations),
		HostNetwork: p.Spec.HostNetwork,
		Phase:       string(p.Status.Phase),
	}
	if p.DeletionTimestamp != nil {
		t := p.DeletionTimestamp.Time
		out.DeletionTimestamp = &t
	}
	ips := make([]string, 0, len(p.Status.PodIPs)+1)
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = append(ips, p.Status.PodIP)
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	return out
}

// TrimNamespace converts a Kubernetes Namespace to the fields the agent uses.
func TrimNamespace(ns *corev1.Namespace) Namespace {
	return Namespace{Name: ns.Name, Labels: ns.Labels}
}

// slimPod is the informer transform for pods: the cache keeps only what
// TrimPod reads (no managed fields, containers, volumes or conditions).
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a cache.DeletedFinalStateUnknown tombstone
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         p.Namespace,
			Name:              p.Name,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			Labels:            p.Labels,
			Annotations:       keptAnnotations(p.Annotations),
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}, nil
}

// slimNamespace is the informer transform for namespaces.
func slimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:            ns.Name,
		UID:             ns.UID,
		ResourceVersion: ns.ResourceVersion,
		Labels:          ns.Labels,
	}}, nil
}

// keptAnnotations keeps the annotations Enrolled reads (the sidecar status
// annotation is large: the injected template's summary).
func keptAnnotations(in map[string]string) map[string]string {
	v, ok := in[SidecarStatusAnnotation]
	if !ok {
		return nil
	}
	return map[string]string{SidecarStatusAnnotation: v}
}
