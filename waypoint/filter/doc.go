// Package filter holds the waypoint's small per-request decisions as pure
// functions: W3C traceparent propagation, x-request-id, x-forwarded-for,
// gRPC status for local replies, whether to retry an attempt, and which
// HTTP version to speak upstream. The listener applies them; they do no
// I/O and are table-tested.
package filter
