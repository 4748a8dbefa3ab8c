package model

// Condition types and reasons written back to policy status (Istio's names).
const (
	ConditionZtunnelAccepted = "ZtunnelAccepted"

	ReasonAccepted         = "Accepted"
	ReasonUnsupportedValue = "UnsupportedValue"
	ReasonInvalidValue     = "InvalidValue"
)

// Diagnostic reasons (not status conditions; for logs and debug views).
const (
	ReasonWaypointNotFound  = "WaypointNotFound"
	ReasonNotAWaypoint      = "NotAWaypoint"
	ReasonWaypointWrongType = "WaypointTrafficTypeMismatch"
	ReasonForWaypoint       = "ForWaypoint"
)

// ObjectRef names the Kubernetes object a condition or diagnostic is about.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Condition is a status condition to be written back to an object by a
// (level-based) status writer.
type Condition struct {
	Object  ObjectRef `json:"object"`
	Type    string    `json:"type"`
	Status  bool      `json:"status"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}

// Diagnostic is an informational finding about the input (a binding to a
// missing waypoint, a policy that only a waypoint enforces, ...).
type Diagnostic struct {
	Object  ObjectRef `json:"object"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
}
