// Package istiodocs runs the steps of Istio ambient's getting-started guide
// on the local cluster with the guide's own manifests, unchanged: the
// namespace label, the L4 AuthorizationPolicy for productpage, the waypoint
// Gateway (as `istioctl waypoint generate` prints it), the L7
// AuthorizationPolicy attached to the productpage Service with targetRefs,
// the ztunnel policy widened to the waypoint, and the HTTPRoute that splits
// reviews 90/10. Only the sample application differs: Bookinfo's Services
// and ServiceAccounts as Bookinfo declares them, its images replaced by the
// echo server (listening on Bookinfo's port 9080), and the guide's curl pod
// replaced by the echo client running as the `curl` ServiceAccount. They run
// in the `default` namespace, as the guide does, which the test puts back as
// it found it. Run with `go test -tags e2e ./e2e/istiodocs/` (make test-e2e).
package istiodocs
