// Package xds holds the end-to-end tests of istiod-lite's ztunnel xDS
// stream on the local cluster: a raw delta-xDS client (pkg/xds) subscribed
// as a ztunnel of node1 straight to an istiod-lite pod's plaintext port
// 15010 (pod IPs are routed from the host; Service VIPs are not) sees
// enrolled pods arrive after they become Ready, leave on delete, policy
// changes, un-enrollment, and malformed policies reported without stopping
// the rest. Run with `go test -tags e2e ./e2e/xds/` (make test-e2e).
package xds
