// Package cluster brings the local cluster up and down: the underlay and node
// namespaces (netsetup), the control plane (controlplane), a Node object and a
// kube-proxy per node, and one detached daemon process that runs every node's
// agent (nodelet). Down removes all of it — processes, namespaces, links,
// routes, mounts and files — whether or not the last run ended cleanly.
package cluster
