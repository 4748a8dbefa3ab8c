// Package hbone implements HBONE, the mesh's tunnel transport shared by
// ztunnel and waypoints: HTTP/2 CONNECT streams inside TLS 1.3 mutual TLS
// (ALPN "h2", port 15008), compatible with Istio ambient.
//
// A Server accepts CONNECT streams from peers whose certificate chains to a
// SPIFFE trust bundle and hands each one to a Handler, which accepts it
// (200) or rejects it (401, 503). A Client opens streams with Dial, pooling
// HTTP/2 connections per (source identity, peer address, expected peer
// identity), at most 100 streams per connection. A Stream ends with
// CloseWrite (half-close, the peer reads io.EOF), Close, or Reset (abort,
// the peer's Read and Write fail with ErrStreamReset).
//
// The HTTP/2 framing is golang.org/x/net/http2's Framer and hpack; the
// stream state machine is this package's own, small CONNECT-only one, so
// that both directions of a tunnel can be half-closed independently (the
// x/net server cannot end its response while still reading the request) and
// an idle stream costs no goroutine on the client side. See README.md.
package hbone
