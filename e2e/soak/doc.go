// Package soak holds the mesh's bounded soak test (build tags e2e and long:
// `make test-long` runs it, `make test` does not): mixed L4 (ztunnel only)
// and L7 (through a waypoint) load with pod churn for a fixed time, with
// goroutines, open descriptors and resident memory of every ztunnel and the
// waypoint measured at the start and the end of the steady phase, and the
// error rate bounded.
package soak
