// Package ctl is the end-to-end suite of ambientctl against the local
// cluster (or -kubeconfig): install twice, check, every command, bad input,
// then uninstall — which must leave no mesh object and no eBPF program, link
// or pinned map on the nodes — and a reinstall at the end so later suites
// find a working mesh. It uninstalls the shared mesh: run it alone, under
// `flock /tmp/amb/cluster.lock`.
package ctl
