// Package upstream is the waypoint's side towards the destination pods:
// an HTTP client whose connections are HBONE streams (one pool per
// endpoint: HTTP/1.1 keep-alive or h2c for HTTP/2 and gRPC clusters), and
// the per-cluster endpoint choice — round robin or least request, with
// outlier ejection after consecutive 5xx answers or connect failures. The
// decisions (Choose, Observe) are pure functions; Balancer keeps their state.
package upstream
