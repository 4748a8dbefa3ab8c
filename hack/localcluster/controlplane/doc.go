// Package controlplane starts and stops the local cluster's Kubernetes control
// plane — etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// built from the Go module proxy by hack/controlplane — as detached processes,
// and writes the PKI and the admin kubeconfig they share.
//
// The API server listens on the underlay address of the root namespace (so
// pods reach it through the default/kubernetes Service like on a real
// cluster); etcd, the controller manager and the scheduler listen on loopback.
package controlplane
