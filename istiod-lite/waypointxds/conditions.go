package waypointxds

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Object kinds a Condition can be about.
const (
	KindHTTPRoute           = "HTTPRoute"
	KindGRPCRoute           = "GRPCRoute"
	KindAuthorizationPolicy = "AuthorizationPolicy"
)

// Condition types and reasons for AuthorizationPolicy status (Istio uses
// WaypointAccepted for policies bound to a waypoint).
const (
	ConditionWaypointAccepted = "WaypointAccepted"
	ReasonAccepted            = "Accepted"
	ReasonUnsupportedValue    = "UnsupportedValue"
)

// Condition is one status condition to write back. For routes, ParentRef
// says which entry of status.parents it belongs to; it is nil for policies.
type Condition struct {
	Kind      string
	Namespace string
	Name      string
	ParentRef *gatewayv1.ParentReference
	metav1.Condition
}

func cond(kind, ns, name string, parent *gatewayv1.ParentReference, gen int64, typ string, ok bool, reason, msg string) Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return Condition{Kind: kind, Namespace: ns, Name: name, ParentRef: parent, Condition: metav1.Condition{
		Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen,
	}}
}
