// Package accesslog formats ztunnel's per-connection access log line: one
// zap entry with the constant message "connection complete" and structured
// fields naming both workloads, their identities, the addresses, the bytes
// each way, the duration and, when the connection failed or was refused,
// the error and reason. Fields is a pure function so the line's shape is
// table-tested; Log writes it.
package accesslog
