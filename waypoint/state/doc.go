// Package state is the waypoint's configuration store. The xDS handler is
// its one writer: it hands over the Envoy Listener, RouteConfiguration,
// Cluster and ClusterLoadAssignment resources it received, the store
// compiles them (route tables, RBAC filter chains, endpoint lists) and
// publishes an immutable Snapshot through an atomic pointer. Readers (the
// listener, per request) call Load and never lock.
//
// An update that does not compile is refused with an error naming the
// resource and field, so the xDS client can NACK it; the previous snapshot
// stays in place.
package state
