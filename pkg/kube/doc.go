// Package kube holds the small Kubernetes helpers the mesh binaries share:
// building a rest.Config from --kubeconfig or the in-cluster service
// account (a re-export of pkg/kube/restconfig), the typed clients
// (Kubernetes, Gateway API, Istio) in one Clients value, and a LeaderElector
// that runs the registered writers (the waypoint controller, status writers,
// the CA root publisher) only on the replica holding a coordination.k8s.io
// Lease, while every replica keeps serving xDS.
//
// Importing this package links every generated clientset and registers every
// API group's scheme at start; binaries that read only core/v1 (ztunnel) use
// pkg/kube/restconfig and pkg/kube/corev1client instead.
package kube
