package waypointctl

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The merge* functions copy the fields the controller owns from a desired
// object onto a copy of the live one and report whether anything changed.
// Fields we do not set (API server defaults, status, fields other actors
// own such as the Service's clusterIP) are left as they are, so a live
// object that only differs by defaulting needs no update. Desired sets
// every defaultable field inside the structures it owns (probe timings,
// port protocols, fieldRef apiVersion, volume modes) for the same reason.

// ControlledBy reports whether gw is obj's controller.
func ControlledBy(obj metav1.Object, gw *gatewayv1.Gateway) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == gw.UID && ref.Kind == "Gateway"
}

// conflictMessage says what to do about a same-named object we do not own.
func conflictMessage(kind string, obj metav1.Object, gw *gatewayv1.Gateway) string {
	return fmt.Sprintf("%s %s/%s exists and is not controlled by Gateway %s: delete it or rename the Gateway",
		kind, obj.GetNamespace(), obj.GetName(), gw.Name)
}

func mergeMeta(live *metav1.ObjectMeta, want metav1.ObjectMeta) {
	if live.Labels == nil && len(want.Labels) > 0 {
		live.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		live.Labels[k] = v
	}
	if live.Annotations == nil && len(want.Annotations) > 0 {
		live.Annotations = map[string]string{}
	}
	for k, v := range want.Annotations {
		live.Annotations[k] = v
	}
	for _, ref := range want.OwnerReferences {
		found := false
		for i, r := range live.OwnerReferences {
			if r.UID == ref.UID {
				live.OwnerReferences[i] = ref
				found = true
			}
		}
		if !found {
			live.OwnerReferences = append(live.OwnerReferences, ref)
		}
	}
}

func changed[T any](before, after T) bool { return !equality.Semantic.DeepEqual(before, after) }

// MergeServiceAccount returns live with our labels and owner reference.
func MergeServiceAccount(live, want *corev1.ServiceAccount) (*corev1.ServiceAccount, bool) {
	out := live.DeepCopy()
	mergeMeta(&out.ObjectMeta, want.ObjectMeta)
	return out, changed(live, out)
}

// MergeService returns live with our metadata, type, selector and ports.
func MergeService(live, want *corev1.Service) (*corev1.Service, bool) {
	out := live.DeepCopy()
	mergeMeta(&out.ObjectMeta, want.ObjectMeta)
	out.Spec.Type = want.Spec.Type
	out.Spec.Selector = want.Spec.Selector
	ports := make([]corev1.ServicePort, len(want.Spec.Ports))
	for i, p := range want.Spec.Ports {
		// keep what the API server allocated (nodePort, for other types)
		for _, lp := range live.Spec.Ports {
			if lp.Name == p.Name {
				p.NodePort = lp.NodePort
			}
		}
		ports[i] = p
	}
	out.Spec.Ports = ports
	return out, changed(live, out)
}

// MergeDeployment returns live with our metadata, replicas, selector, pod
// labels, service account, grace period, the waypoint container's image,
// args, env, ports, mounts, readiness probe and resources, and our volumes.
func MergeDeployment(live, want *appsv1.Deployment) (*appsv1.Deployment, bool) {
	out := live.DeepCopy()
	mergeMeta(&out.ObjectMeta, want.ObjectMeta)
	out.Spec.Replicas = want.Spec.Replicas
	out.Spec.Selector = want.Spec.Selector
	mergeMeta(&out.Spec.Template.ObjectMeta, want.Spec.Template.ObjectMeta)

	ps, wps := &out.Spec.Template.Spec, &want.Spec.Template.Spec
	ps.ServiceAccountName = wps.ServiceAccountName
	ps.TerminationGracePeriodSeconds = wps.TerminationGracePeriodSeconds

	for _, wc := range wps.Containers {
		i := containerIndex(ps.Containers, wc.Name)
		if i < 0 {
			ps.Containers = append(ps.Containers, wc)
			continue
		}
		c := &ps.Containers[i]
		c.Image = wc.Image
		c.Args = wc.Args
		c.Env = wc.Env
		c.Ports = wc.Ports
		c.VolumeMounts = wc.VolumeMounts
		c.ReadinessProbe = wc.ReadinessProbe
		c.Resources = wc.Resources
	}
	for _, wv := range wps.Volumes {
		i := volumeIndex(ps.Volumes, wv.Name)
		if i < 0 {
			ps.Volumes = append(ps.Volumes, wv)
			continue
		}
		ps.Volumes[i] = wv
	}
	return out, changed(live, out)
}

func containerIndex(cs []corev1.Container, name string) int {
	for i, c := range cs {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func volumeIndex(vs []corev1.Volume, name string) int {
	for i, v := range vs {
		if v.Name == name {
			return i
		}
	}
	return -1
}
