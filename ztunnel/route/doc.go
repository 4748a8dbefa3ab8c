// Package route holds ztunnel's pure routing decisions, separate from I/O
// (as upstream ztunnel's build_request in src/proxy/outbound.rs):
//
//   - Route: where an outbound connection captured from a local pod goes —
//     HBONE straight to the destination pod, HBONE to a waypoint, plain TCP
//     passthrough, or deny — with the CONNECT authority and the identity to
//     verify.
//   - InboundTarget: whether an HBONE CONNECT arriving on 15008 may reach the
//     pod it names (a local, enrolled workload, reached through its waypoint
//     if it has one).
//
// Both take a state.Snapshot and return values; randomness comes from the
// caller so tests are deterministic.
package route
