// Package waypoint holds the end-to-end tests of L7 through waypoints on the
// local cluster: a waypoint deployed from a Gateway with ambientctl, Gateway
// API HTTPRoute weights and header matches applied by it, and its Istio
// request metrics (TestWaypointRouting); the headers it adds as the echo
// server sees them, a request timeout (504), retries, an L7
// AuthorizationPolicy per principal, gRPC unary and streaming calls through a
// GRPCRoute, and a route to a missing Service reported in its status while
// the other routes keep working (TestWaypointL7). Run with
// `go test -tags e2e ./e2e/...` (make test-e2e).
package waypoint
