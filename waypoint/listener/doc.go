// Package listener is the waypoint's L7 data path: an hbone.Handler that
// takes the CONNECT streams ztunnels open to the waypoint (port 15008),
// selects the filter chain by the CONNECT authority's port, and serves the
// HTTP inside the tunnel. HTTP/1.1 takes a lean path in the tunnel's own
// goroutine (h1Conn: http.ReadRequest, handle, one flush per answer; no
// per-request goroutines or deadlines; keep-alive, pipelining, chunked
// bodies and trailers, Expect: 100-continue, net/http's limits and error
// answers). A tunnel that starts with the HTTP/2 preface ("PRI *
// HTTP/2.0", prior knowledge: gRPC, h2c) goes to one net/http server,
// gRPC included with its trailers and streaming. Each request goes through RBAC, route match,
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
