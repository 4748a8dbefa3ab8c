// Package mesh holds the end-to-end tests of the L4 mesh on the local
// cluster: install with ambientctl, enrollment by namespace label, mTLS
// through ztunnel between nodes, L4 AuthorizationPolicy, and un-enrollment;
// the data path itself: only TLS on 15008 crosses the underlay (a packet
// capture on the bridge), the server sees the client's own pod IP, metrics
// and access logs name both identities, and restarting ztunnel (pod deleted,
// proxy killed) never lets a connection bypass the mesh.
// Run with `go test -tags e2e ./e2e/...` (make test-e2e).
package mesh
