// Package faults holds end-to-end tests of the mesh surviving faults of its
// own parts: the control plane (istiod-lite, kube-apiserver) going away under
// steady traffic, the data plane keeping its last good config, and the
// proxies reconnecting and converging by themselves when it returns.
package faults
