// Package nodelet is the local cluster's node agent, standing in for the
// kubelet: one per node (a network namespace), it keeps the Node object
// Ready and turns every Pod bound to its node into processes — each
// container started through the shim (package shim) in the pod's network
// namespace (the node's for hostNetwork pods) with its volumes bind-mounted
// in a private mount namespace. It honours command/args/env (downward API,
// ConfigMap/Secret references), service-account tokens from the TokenRequest
// API (refreshed at 80% of their life), ConfigMap/Secret/projected/
// downwardAPI/emptyDir/hostPath volumes (ConfigMap/Secret files refreshed
// periodically), probes (httpGet/tcpSocket dialled from the node netns, exec
// through the shim), init containers and native sidecars, restart policies
// with crash-loop back-off, and deletion; with Config.DNS set, containers
// get a per-pod /etc/resolv.conf pointing at the cluster DNS (PodResolvConf:
// dnsPolicy and dnsConfig as the kubelet reads them). Container output is appended to
// StateDir/pods/<ns>_<name>_<uid>/<container>.log.
//
// Goroutines: Run owns one pod informer (field selector spec.nodeName), a
// node heartbeat loop (Node status + Lease), and one worker per pod (keyed
// by UID). A worker owns all state of its pod; container processes, probes,
// token and volume refreshers run on goroutines of their own that report
// back to the worker over channels. Status writes are level-based: the
// worker computes the desired PodStatus (BuildPodStatus, a pure function)
// and patches it only when it differs from what the API server has.
//
// Decisions are pure functions with table tests: image reference → binary
// (ImageName), environment and $(VAR) expansion (ResolveEnv, Expand),
// command/args (BuildArgv), probe thresholds (ProbeState.Observe), crash-loop
// back-off (Backoff), hostPath mapping (MapHostPath), pod status
// (BuildPodStatus), node status (BuildNodeStatus) and resolv.conf
// (PodResolvConf).
//
// Not a kubelet: no resource limits, securityContext, user namespaces,
// enableServiceLinks variables, image-change restarts or `kubectl
// logs/exec`; every container runs as root on the host filesystem.
package nodelet
