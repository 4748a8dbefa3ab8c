// Package waypointxds translates the L7 configuration of one waypoint — the
// Services bound to it, the Gateway API HTTPRoutes and GRPCRoutes attached to
// those Services (GAMMA) or to the waypoint Gateway, and the AuthorizationPolicies
// targeting them — into the Envoy v3 Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment resources the waypoint consumes over delta xDS.
//
// Build is a pure function: it reads plain input structs and returns the
// resources in a deterministic order plus the status conditions to write back.
// README.md in this directory documents the field-by-field mapping and what is
// not supported; waypoint/router implements the receiving side and its tests
// read this package's golden outputs to keep both ends in agreement.
package waypointxds
