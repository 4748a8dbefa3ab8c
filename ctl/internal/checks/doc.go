// Package checks holds the decisions of `ambientctl check`: pre-install
// (Kubernetes version, CRD conflicts, nodes) and post-install (istiod-lite
// ready, a ready ztunnel on every node, the root certificate published), as
// pure functions over objects the command has read.
package checks
