// Package api is the wire contract of the echo test app, shared by its
// server, its client and the end-to-end tests that read its answers: the
// Identity a server reports (filled from the pod's environment), the JSON
// body of HTTP responses, the greeting line of TCP connections, the names
// of the behaviour knobs, and the hand-written gRPC service echo.Echo
// (service descriptor, server interface and client stub; no protoc needed,
// messages are google.protobuf.Struct).
package api
