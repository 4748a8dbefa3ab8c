// Package cluster holds the end-to-end tests of the local test cluster
// itself: Deployments, Services through kube-proxy across nodes, pod
// replacement, and the errors a user sees for a bad image or a crashing
// container. Run with `go test -tags e2e ./e2e/...` (make test-e2e).
package cluster
