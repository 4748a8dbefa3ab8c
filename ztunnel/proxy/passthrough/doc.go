// Package passthrough is ztunnel's plaintext inbound (port 15006, upstream
// ztunnel's inbound_passthrough): connections from clients outside the mesh
// to a local enrolled pod, captured with the pod's address as their local
// address. The destination must be an enrolled workload on this node; L4
// policy is evaluated without a peer identity, so a STRICT PeerAuthentication
// (or any rule on principals, namespaces or service accounts) refuses the
// connection with a reset; otherwise the pod is dialed and bytes relayed.
package passthrough
