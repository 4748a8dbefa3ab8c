// Package framework runs end-to-end tests against a Kubernetes cluster: the
// local cluster of hack/localcluster, brought up once per test binary (and
// down again unless it was already up or -keep-cluster is set), or any
// cluster given with -kubeconfig. Each test gets its own namespace, deleted
// afterwards; when a test fails, the logs of its pods are attached to it.
package framework
