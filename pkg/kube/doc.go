// Package kube holds the small Kubernetes helpers the mesh binaries share:
// building a rest.Config from --kubeconfig or the in-cluster service
// account, the typed clients (Kubernetes, Gateway API, Istio) in one
// Clients value, and a LeaderElector that runs the registered writers (the
// waypoint controller, status writers, the CA root publisher) only on the
// replica holding a coordination.k8s.io Lease, while every replica keeps
// serving xDS.
package kube
