// Package listener is the waypoint's L7 data path: an hbone.Handler that
// takes the CONNECT streams ztunnels open to the waypoint (port 15008),
// selects the filter chain by the CONNECT authority's port, and serves the
// HTTP inside the tunnel with one net/http server: HTTP/1.1, or HTTP/2 with
// prior knowledge (net/http recognises the "PRI * HTTP/2.0" preface when
// Protocols include UnencryptedHTTP2), gRPC included with its trailers and
// streaming. Each request goes through RBAC, route match,
// fault injection, redirects and direct responses, header mutations and
// rewrites, then to an endpoint of the chosen cluster over HBONE (package
// upstream) with timeouts and retries. A port without an HTTP chain is
// passed through as TCP to its destination over HBONE.
//
// The per-request decision (Decide) is a pure function of the
// configuration snapshot and the request; ServeHTTP carries it out.
// Concurrent tunnels and requests are capped (503 over the cap) so one
// tenant cannot exhaust the waypoint. Every request is counted in Istio's
// standard metrics and written to the access log.
package listener
