// Package mesh holds the end-to-end tests of the L4 mesh on the local
// cluster: install with ambientctl, enrollment by namespace label, mTLS
// through ztunnel between nodes, L4 AuthorizationPolicy, and un-enrollment.
// Run with `go test -tags e2e ./e2e/...` (make test-e2e).
package mesh
