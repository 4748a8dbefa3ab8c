// Package capture steers enrolled pods' TCP connections to ztunnel with eBPF.
//
// A TCX ingress program (bpf/capture.c, compiled by bpf2go and committed) runs
// on the host side of every pod's veth and on the node uplink. It assigns
// (bpf_sk_assign) the SYNs of enrolled pods to ztunnel's IP_TRANSPARENT
// listeners, which are registered in a pinned SOCKMAP: outbound (15001),
// inbound plaintext (15006) and HBONE inbound (15008). The accepted socket's
// local address (getsockname) is the original destination. Packets of flows
// that belong to a socket of the node netns follow that socket. Traffic that is
// not ours is left to the next TCX program (TC_ACT_UNSPEC). A second program
// (BPF sk_lookup on the node netns) makes SYNs that reuse a TIME_WAIT socket's
// addresses reach the listener too. When a capture
// listener is missing the SYN is dropped, so a client retries until the proxy
// is back: enrolled traffic never bypasses the proxy.
//
// Two roles share the pinned state under a bpffs directory:
//   - the capture agent ([Load]) loads the program, attaches and pins TCX links,
//     keeps the enrolled-IP map and sets up node routing ([NodeRouting]);
//   - the proxy ([Open]) only registers its listeners ([ListenTransparent],
//     [Sockmap.Register]) and reads the original destination ([OriginalDst]).
//
// The package never logs on its own behalf except through the logger passed in
// [Options]; errors are returned wrapped, [ErrNotSupported] where the kernel
// lacks a feature. IPv4 and IPv6 (see README.md for the limits).
package capture
