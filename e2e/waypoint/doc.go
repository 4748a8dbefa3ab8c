// Package waypoint holds the end-to-end tests of L7 through waypoints on the
// local cluster: a waypoint deployed from a Gateway with ambientctl, Gateway
// API HTTPRoute weights and header matches applied by it, and its Istio
// request metrics. Run with `go test -tags e2e ./e2e/...` (make test-e2e).
package waypoint
