// Package rbac evaluates L4 authorization policies (istio.security.Authorization,
// as istiod sends them to ztunnel) against a connection. Evaluate is a pure
// function with Istio ztunnel's semantics; choosing which policies apply to a
// workload (scope) is done by state.Snapshot.PoliciesFor.
//
// Structure of a policy: Authorization.groups are OR-ed (one group per Istio
// rule); within a group, Rules are AND-ed (from, to, when); within a Rules,
// matches are OR-ed (e.g. the entries of an Istio rule's from list); within a
// Match, each set field must match (AND) and the values of one field are
// OR-ed; a not_ field excludes. As upstream ztunnel (src/rbac.rs): a policy
// without groups matches nothing, a Rules without matches matches
// everything, an empty Match matches nothing, principals are compared with
// the peer's "spiffe://" stripped, and namespaces against "" for plaintext.
package rbac
