// Package admin serves the debug and operations endpoints every mesh binary
// shares: /config_dump (a JSON view of the process's state), /logging (read
// or change the log level at run time), /debug/pprof, Prometheus metrics, and
// readiness at /healthz/ready (Istio's path). Handlers are plain http.Handlers
// so each binary mounts them on its own ports (15000 admin, 15020 metrics,
// 15021 readiness).
package admin
