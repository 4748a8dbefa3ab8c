// Package corev1client lists and watches core/v1 Pods and Namespaces over a
// REST client whose scheme holds only core/v1 (and the meta/v1 options).
//
// It does what client-go's kubernetes.Interface CoreV1().Pods/Namespaces
// List and Watch do (same requests, protobuf preferred, same parameter
// encoding) without importing k8s.io/client-go/kubernetes, whose scheme
// package links and registers every built-in API group at process start.
// ztunnel's capture role uses it: the typed clientsets made up a large part
// of ztunnel's binary and of its file-backed resident memory.
package corev1client
