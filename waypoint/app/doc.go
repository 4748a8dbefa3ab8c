// Package app wires the waypoint binary together: the certificate manager
// (pkg/identity, from istiod-lite's CA or a local CA), the configuration
// store (waypoint/state) fed by the delta xDS client (pkg/xds) or a local
// file, the L7 listener (waypoint/listener) behind an HBONE server on 15008,
// and the admin (15000), metrics (15020: Istio's request metrics and the
// waypoint_certificate_* metrics of its own certificate) and readiness
// (15021) endpoints.
//
// Goroutines: one per served port (HBONE accept loop, admin, metrics,
// readiness), the xDS client's, and the identity manager's renewal workers.
// The xDS client's receive goroutine is the only writer of the state store;
// every request reads an immutable snapshot.
//
// Readiness (/healthz/ready) needs the waypoint's certificate and its
// configuration (all four xDS types accepted once, or the local file
// loaded). On SIGTERM Run drains: readiness turns 503, the HBONE port stops
// accepting, open tunnels and requests get --drain-timeout to finish, then
// the xDS client, the HTTP ports and the certificate manager stop.
//
// istiod-lite serves every waypoint's listeners and route configurations
// with names prefixed "<namespace>/<gateway name>/"; clusters and endpoints
// are shared and unprefixed. OwnResources keeps this waypoint's and strips
// the prefix, so the store sees the names of istiod-lite's waypointxds
// golden outputs.
package app
