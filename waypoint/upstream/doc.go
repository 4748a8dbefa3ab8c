// Package upstream is the waypoint's side towards the destination pods:
// an HTTP client whose connections are HBONE streams (one pool per
// endpoint: HTTP/1.1 keep-alive or h2c for HTTP/2 and gRPC clusters; bodiless
// replayable HTTP/1.1 requests skip http.Transport and are written and read
// in the caller's goroutine, see h1Pool), and
// the per-cluster endpoint choice — round robin or least request, with
// outlier ejection after consecutive 5xx answers or connect failures. The
// decisions (Choose, Observe) are pure functions; Balancer keeps their state.
package upstream
