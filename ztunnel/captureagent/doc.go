// Package captureagent is ztunnel's capture role: the node agent that keeps
// the eBPF capture of package capture in sync with the pods of its node.
//
// It watches this node's pods (field selector spec.nodeName) and all
// namespaces, decides which pods are enrolled ([Enrolled], Istio ambient's
// rules on the istio.io/dataplane-mode label) and converges the datapath to a
// desired state with one level-based reconcile ([Plan]): the program is
// attached to the host-side veth of every non-hostNetwork pod of the node and
// to the node uplink, and the enrolled-IP map holds exactly the enrolled pods'
// addresses. One worker goroutine is the only writer; it runs on every change
// and on a periodic resync, so drift (a map entry removed by hand, a link
// detached) is repaired.
//
// Node preparation (loading and pinning the program, policy routing for
// marked packets, the nftables notrack rule for kube-proxy nodes) and the
// uninstall are [Start], [Node.Run] and [Uninstall] (Linux). Everything that
// touches the kernel or the API server sits behind an interface ([Datapath],
// [VethResolver], [UplinkResolver]) so the reconcile loop is tested with
// fakes. See README.md for privileges and how uninstall is triggered.
package captureagent
