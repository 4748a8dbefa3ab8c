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
// identity (certificates), one sweeping the identities no workload of this
// node uses any more (dropped after two 30 s sweeps without one), one
// keeping the listeners registered with capture, one per HTTP server.
//
// Source IP: with capture and --preserve-source-ip (default, as DESIGN.md
// says), connections to local pods from clients on other nodes are dialed
// from the client's pod IP (inbound.SourceKeepingDial + IP_TRANSPARENT); the
// capture program hands the pod's answers back to that socket.
//
// Start and upgrade: the listeners are registered with capture only once
// the configuration is there (first xDS sync), so captured SYNs wait rather
// than reach a proxy that cannot route them. On SIGTERM the proxy stops
// accepting and drains (--drain-timeout, readiness 503 meanwhile). A new
// process started while the old one still runs takes the capture sockmap
// slots over as soon as it has its configuration (a listener address still
// held by the old process is replaced by a free port: capture delivers to
// the registered socket, not to an address; the admin ports wait until they
// are free); after that a slot is only refilled when it is empty, so two
// live processes never fight over it.
package app
