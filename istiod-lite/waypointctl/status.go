package waypointctl

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Validation is the verdict on a waypoint Gateway's spec.
type Validation struct {
	Accepted bool
	// Message says what to fix when not Accepted.
	Message string
}

// Validate checks what a waypoint needs: a listener {port: 15008,
// protocol: HBONE}, and a well-formed AnnotationReplicas.
func Validate(gw *gatewayv1.Gateway) Validation {
	if !hasHBONEListener(gw) {
		return Validation{Message: fmt.Sprintf("a waypoint needs a listener {name: mesh, port: %d, protocol: %s}", HBONEPort, HBONEProtocol)}
	}
	if _, err := replicas(gw, 1); err != nil {
		return Validation{Message: err.Error()}
	}
	return Validation{Accepted: true}
}

func isHBONE(l gatewayv1.Listener) bool {
	return l.Protocol == HBONEProtocol && l.Port == HBONEPort
}

func hasHBONEListener(gw *gatewayv1.Gateway) bool {
	for _, l := range gw.Spec.Listeners {
		if isHBONE(l) {
			return true
		}
	}
	return false
}

// Observed is what the controller found (or made) for a Gateway's children.
type Observed struct {
	// Deployment and Service as last read or written; nil when absent.
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	// Conflict, when set, says which child exists but is not owned by the
	// Gateway (the controller leaves such objects alone).
	Conflict string
}

// ComputeStatus derives the Gateway status from its spec and children.
// Conditions carry ObservedGeneration and no LastTransitionTime (MergeStatus
// sets it). The status holds no state of its own, so it is a pure function.
func ComputeStatus(gw *gatewayv1.Gateway, v Validation, obs Observed, clusterDomain string) gatewayv1.GatewayStatus {
	gen := gw.Generation
	accepted := cond(gatewayv1.GatewayConditionAccepted, true, gatewayv1.GatewayReasonAccepted, "Resource accepted", gen)
	if !v.Accepted {
		accepted = cond(gatewayv1.GatewayConditionAccepted, false, gatewayv1.GatewayReasonInvalidParameters, v.Message, gen)
	}

	var programmed metav1.Condition
	pending := func(msg string) metav1.Condition {
		return cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonPending, msg, gen)
	}
	dep, svc := obs.Deployment, obs.Service
	switch {
	case !v.Accepted:
		programmed = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonInvalid, "Gateway not accepted: "+v.Message, gen)
	case obs.Conflict != "":
		programmed = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonNoResources, obs.Conflict, gen)
	case dep == nil || svc == nil:
		programmed = pending("waiting for the waypoint Deployment and Service to be created")
	case !hasClusterIP(svc):
		programmed = pending(fmt.Sprintf("Service %s/%s has no ClusterIP yet", svc.Namespace, svc.Name))
	case dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0:
		programmed = cond(gatewayv1.GatewayConditionProgrammed, false, gatewayv1.GatewayReasonNoResources,
			fmt.Sprintf("Deployment %s/%s is scaled to 0 replicas (annotation %s)", dep.Namespace, dep.Name, AnnotationReplicas), gen)
	case dep.Status.ReadyReplicas == 0:
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		programmed = pending(fmt.Sprintf("Deployment %s/%s has no ready replicas (0/%d): check its pods", dep.Namespace, dep.Name, want))
	default:
		programmed = cond(gatewayv1.GatewayConditionProgrammed, true, gatewayv1.GatewayReasonProgrammed, "Resource programmed, assigned to service(s) "+serviceHost(svc, clusterDomain), gen)
	}

	st := gatewayv1.GatewayStatus{Conditions: []metav1.Condition{accepted, programmed}}
	if v.Accepted && obs.Conflict == "" && svc != nil {
		if hasClusterIP(svc) {
			st.Addresses = append(st.Addresses, gatewayv1.GatewayStatusAddress{Type: new(gatewayv1.IPAddressType), Value: svc.Spec.ClusterIP})
		}
		st.Addresses = append(st.Addresses, gatewayv1.GatewayStatusAddress{Type: new(gatewayv1.HostnameAddressType), Value: serviceHost(svc, clusterDomain)})
	}
	for _, l := range gw.Spec.Listeners {
		st.Listeners = append(st.Listeners, listenerStatus(l, programmed.Status == metav1.ConditionTrue, gen))
	}
	return st
}

func listenerStatus(l gatewayv1.Listener, programmed bool, gen int64) gatewayv1.ListenerStatus {
	ls := gatewayv1.ListenerStatus{Name: l.Name, SupportedKinds: []gatewayv1.RouteGroupKind{}}
	resolved := cond(gatewayv1.ListenerConditionResolvedRefs, true, gatewayv1.ListenerReasonResolvedRefs, "No errors found", gen)
	if !isHBONE(l) {
		msg := fmt.Sprintf("waypoints serve only protocol %s on port %d", HBONEProtocol, HBONEPort)
		ls.Conditions = []metav1.Condition{
			cond(gatewayv1.ListenerConditionAccepted, false, gatewayv1.ListenerReasonUnsupportedProtocol, msg, gen),
			cond(gatewayv1.ListenerConditionProgrammed, false, gatewayv1.ListenerReasonInvalid, msg, gen),
			resolved,
		}
		return ls
	}
	p := cond(gatewayv1.ListenerConditionProgrammed, true, gatewayv1.ListenerReasonProgrammed, "No errors found", gen)
	if !programmed {
		p = cond(gatewayv1.ListenerConditionProgrammed, false, gatewayv1.ListenerReasonPending, "waiting for the waypoint to be ready", gen)
	}
	ls.Conditions = []metav1.Condition{
		cond(gatewayv1.ListenerConditionAccepted, true, gatewayv1.ListenerReasonAccepted, "No errors found", gen),
		p,
		resolved,
	}
	return ls
}

func hasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func serviceHost(svc *corev1.Service, clusterDomain string) string {
	return svc.Name + "." + svc.Namespace + ".svc." + clusterDomain
}

// cond builds a condition; the typed constants of gateway-api are all
// string kinds.
func cond[T, R ~string](typ T, ok bool, reason R, msg string, gen int64) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: string(typ), Status: s, Reason: string(reason), Message: msg, ObservedGeneration: gen}
}

// MergeConditions returns next with each condition's LastTransitionTime
// taken from prev when the condition's Status did not change, and now
// otherwise (the Kubernetes convention).
func MergeConditions(prev, next []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := make([]metav1.Condition, len(next))
	for i, c := range next {
		c.LastTransitionTime = now
		for _, p := range prev {
			if p.Type == c.Type && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		out[i] = c
	}
	return out
}

// MergeStatus applies MergeConditions to the Gateway and listener
// conditions of next against prev. A listener's attachedRoutes is kept from
// prev: counting routes is the route status writer's job, and overwriting
// it here would make the two writers fight.
func MergeStatus(prev, next gatewayv1.GatewayStatus, now metav1.Time) gatewayv1.GatewayStatus {
	out := *next.DeepCopy()
	out.Conditions = MergeConditions(prev.Conditions, next.Conditions, now)
	for i := range out.Listeners {
		var prevConds []metav1.Condition
		for _, pl := range prev.Listeners {
			if pl.Name == out.Listeners[i].Name {
				prevConds = pl.Conditions
				out.Listeners[i].AttachedRoutes = pl.AttachedRoutes
			}
		}
		out.Listeners[i].Conditions = MergeConditions(prevConds, out.Listeners[i].Conditions, now)
	}
	return out
}

// StatusEqual compares two statuses ignoring LastTransitionTime.
func StatusEqual(a, b gatewayv1.GatewayStatus) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	clearTimes(a.Conditions)
	clearTimes(b.Conditions)
	for i := range a.Listeners {
		clearTimes(a.Listeners[i].Conditions)
	}
	for i := range b.Listeners {
		clearTimes(b.Listeners[i].Conditions)
	}
	return equality.Semantic.DeepEqual(a, b)
}

func clearTimes(cs []metav1.Condition) {
	for i := range cs {
		cs[i].LastTransitionTime = metav1.Time{}
	}
}
