package kube

import (
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
)

// keptAnnotations lists, per kind, the annotations the model reads; all
// other annotations are dropped from the cache.
var keptAnnotations = map[string][]string{
	"AuthorizationPolicy": {model.AnnotationDryRun},
}

// Transform trims an object before the informer caches it: managedFields
// and unused annotations everywhere; a Pod keeps only container ports,
// serviceAccountName, nodeName, hostNetwork, its controller owner, phase,
// pod IPs and the Ready condition. It mutates obj in place (informers hand
// it freshly decoded objects) and passes unknown types through. Do not
// share these informers with code that needs the full objects.
func Transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		trimMeta(&o.ObjectMeta, nil)
		trimPod(o)
	case *corev1.Namespace:
		trimMeta(&o.ObjectMeta, nil)
		o.Spec = corev1.NamespaceSpec{}
		o.Status = corev1.NamespaceStatus{}
	case *corev1.Service:
		trimMeta(&o.ObjectMeta, nil)
		o.Status.Conditions = nil
	case *securityv1.AuthorizationPolicy:
		trimMeta(&o.ObjectMeta, keptAnnotations["AuthorizationPolicy"])
	case *securityv1.PeerAuthentication:
		trimMeta(&o.ObjectMeta, nil)
	case *gatewayv1.Gateway:
		trimMeta(&o.ObjectMeta, nil)
	case *gatewayv1.HTTPRoute:
		o.ManagedFields = nil
	case *gatewayv1.GRPCRoute:
		o.ManagedFields = nil
	}
	return obj, nil
}

func trimMeta(m *metav1.ObjectMeta, keep []string) {
	m.ManagedFields = nil
	var ann map[string]string
	for _, k := range keep {
		if v, ok := m.Annotations[k]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	m.Annotations = ann
}

func trimPod(p *corev1.Pod) {
	var owners []metav1.OwnerReference
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			owners = append(owners, ref)
			break
		}
	}
	p.OwnerReferences = owners
	containers := make([]corev1.Container, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		containers = append(containers, corev1.Container{Name: c.Name, Ports: c.Ports})
	}
	p.Spec = corev1.PodSpec{
		Containers:         containers,
		ServiceAccountName: p.Spec.ServiceAccountName,
		NodeName:           p.Spec.NodeName,
		HostNetwork:        p.Spec.HostNetwork,
	}
	var conds []corev1.PodCondition
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			conds = append(conds, corev1.PodCondition{Type: c.Type, Status: c.Status})
		}
	}
	p.Status = corev1.PodStatus{
		Phase:      p.Status.Phase,
		PodIP:      p.Status.PodIP,
		PodIPs:     p.Status.PodIPs,
		Conditions: conds,
	}
}
