// Package model is istiod-lite's "ambient index": it turns trimmed
// Kubernetes objects (Namespaces, Pods, Services, AuthorizationPolicies,
// PeerAuthentications, waypoint Gateways) into the resources an Istio
// ztunnel consumes over delta xDS — istio.workload.Address (Workloads and
// Services) and istio.security.Authorization — exactly in the shape Istio's
// istiod produces them, so upstream ztunnel and ours are interchangeable.
//
// Build is a pure function of Input and Config: the caller (one writer
// goroutine) rebuilds a whole Snapshot on a change and pushes only what
// Diff reports as changed. When only pods changed, Snapshot.WithPods
// recomputes just their workloads on the previous Snapshot (equal to a
// Build of the new input, checked against every golden input). The package knows nothing about informers; the
// From* converters take typed API objects, so tests feed it YAML.
//
// Conventions followed from Istio (pilot/pkg/serviceregistry/kube/controller/ambient):
//   - workload uid "<cluster>//Pod/<ns>/<name>"; Address names: the uid for
//     workloads, "<ns>/<hostname>" for services; Authorization names
//     "<ns>/<name>".
//   - AuthorizationPolicy with targetRefs is for waypoints, never ztunnel;
//     in an ALLOW rule any HTTP-only field drops the whole rule (an ALLOW
//     policy left without rules matches nothing: deny-all for its scope); in
//     a DENY rule HTTP-only fields are ignored, so the rule matches more
//     (more restrictive). CUSTOM and AUDIT are not sent to ztunnel.
//   - PeerAuthentication STRICT is expressed as references from workloads
//     to the static DENY policy "<root>/istio_converted_static_strict"
//     (not_principals: [presence] = "no mTLS identity"), sent whenever any
//     PeerAuthentication exists; port-level exceptions become a per-policy
//     DENY "<ns>/converted_peer_authentication_<name>".
package model
