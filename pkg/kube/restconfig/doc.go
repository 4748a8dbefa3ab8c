// Package restconfig builds a client-go rest.Config from --kubeconfig or the
// in-cluster service account, with the mesh's client-side rate limits and
// user agent. It links only client-go's rest and clientcmd packages, not
// the generated clientsets, so binaries that talk to few APIs (ztunnel)
// stay small; pkg/kube re-exports it for the control plane and the CLI.
package restconfig
