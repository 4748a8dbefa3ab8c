// Package app wires istiod-lite's packages into the running control plane:
// informers → Watcher → Debouncer → one rebuild goroutine (model.Build and
// waypointxds.Build → xds.Server), the CA on both gRPC ports, leader-elected
// writers (waypoint controller, status writer, CA root publisher), and the
// monitoring and readiness HTTP endpoints. README.md describes the goroutine
// model and the waypoint resource names.
package app
