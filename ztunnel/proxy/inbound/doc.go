// Package inbound is ztunnel's HBONE inbound (port 15008): the handler of an
// hbone.Server that presents, per TLS connection, the certificate of the
// destination workload the connection was sent to (its local address), and
// for each CONNECT stream checks the authority (route.InboundTarget: a local
// enrolled pod, reached through its waypoint if it has one) and L4
// authorization (rbac.Evaluate against the verified peer identity), dials
// the pod and relays bytes both ways.
//
// The client IP policy sees is the `forwarded: for=` address only when the
// peer may speak for it — its identity is that of the workload at that
// address, or it is a waypoint of the destination — and otherwise the HBONE
// connection's remote address (SourceIP), so a mesh peer cannot claim
// another workload's IP to pass an ipBlocks rule.
//
// Answers: 200 tunnel up; 400 bad or unknown authority (not a workload of
// this node, not enrolled — as upstream ztunnel, the peer asked for
// something this ztunnel does not serve, retrying cannot help); 401 denied
// by policy or a waypoint bypassed; 503 the pod could not be reached.
package inbound
