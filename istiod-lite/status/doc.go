// Package status is istiod-lite's status writer: it writes the conditions the
// model computes back onto the objects they are about — ZtunnelAccepted and
// WaypointAccepted on security.istio.io AuthorizationPolicies (status.conditions,
// Istio's IstioStatus), and Accepted/ResolvedRefs entries of the waypoint
// controller in HTTPRoute and GRPCRoute status.parents.
//
// It is level-based: each round computes the desired status of every cached
// object from the latest model (pure functions FromConditions, PolicyStatus,
// RouteParents), compares it with the cached status ignoring transition times,
// and only for objects that differ reads the live object and calls
// UpdateStatus. Conditions of other types and parents of other controllers are
// left alone. Run it only on the leader replica.
package status
