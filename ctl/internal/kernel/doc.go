// Package kernel probes the eBPF features ztunnel's capture needs (the bpf
// syscall, SOCKMAP, sk_lookup, bpf_sk_assign, TCX) on the node it runs on,
// and encodes the result in a process exit code, so `ambientctl check` can
// read it from a short-lived pod's status on any cluster (no pods/log
// needed).
package kernel
