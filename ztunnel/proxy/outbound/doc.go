// Package outbound is ztunnel's outbound proxy (port 15001): connections
// captured from local enrolled pods, whose local address is the original
// destination. For each one it finds the source workload by the client's
// IP (an unknown source is reset: only enrolled pods are captured), decides
// with route.Route, then opens an HBONE stream with the source workload's
// certificate to the destination pod's or waypoint's ztunnel — verifying the
// peer's identity — or dials the destination in plaintext (passthrough),
// and relays bytes both ways. Any refusal or dial failure resets the
// client's connection, so the application sees "connection reset", as with
// upstream ztunnel.
package outbound
