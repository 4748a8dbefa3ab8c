// Package knobs parses the behaviour knobs a request can carry to script an
// echo server (status, delay, fail probability, body size, gRPC code), from
// query parameters and headers. Parsing is a pure function; applying the
// knobs is left to the server.
package knobs
