// Package app assembles ztunnel from its parts for one of its two roles.
//
// Proxy role: the state store fed by the xDS client (or a local config
// file), the certificate manager (pkg/identity) fed by the CA, the data path
// (ztunnel/proxy) on transparent listeners registered with the capture
// sockmap, and the admin (15000), metrics (15020) and readiness (15021)
// endpoints.
//
// Capture role: the capture agent (ztunnel/captureagent) that loads the eBPF
// programs and keeps them in sync with this node's pods.
//
// Goroutines: one per listener accept loop and connection (proxy), one xDS
// stream (its handler is the store's only writer), one worker per workload
// identity (certificates), one per HTTP server.
package app
