// Package hbone implements HBONE, the mesh's tunnel transport shared by
// ztunnel and waypoints: HTTP/2 CONNECT streams inside TLS 1.3 mutual TLS
// (ALPN "h2", port 15008), compatible with Istio ambient.
//
// A Server accepts CONNECT streams from peers whose certificate chains to a
// SPIFFE trust bundle and hands each one to a Handler, which accepts it
// (200) or rejects it (401, 503). A Client opens streams with Dial, pooling
// HTTP/2 connections per (source identity, peer address, expected peer
// identity), at most 100 streams per connection; once every connection
// carries 4 streams, up to 4 connections share the load (each has its own
// read loop, so busy streams use several cores). A Stream ends with
// CloseWrite (half-close, the peer reads io.EOF), Close, or Reset (abort,
// the peer's Read and Write fail with ErrStreamReset).
//
// The HTTP/2 framing is golang.org/x/net/http2's Framer and hpack; the
// stream state machine is this package's own, small CONNECT-only one, so
// that both directions of a tunnel can be half-closed independently (the
// x/net server cannot end its response while still reading the request) and
// an idle stream costs no goroutine on the client side. See README.md.
//
// # Limits against hostile peers (server)
//
// Every limit has a default and a knob in Limits or ServerConfig:
//   - HandshakeTimeout (10 s): the TLS handshake and the HTTP/2 client
//     preface must finish within it, or the TCP connection is closed.
//   - MaxConcurrentStreams (100): streams beyond it get
//     RST_STREAM(REFUSED_STREAM); more than 4 × MaxConcurrentStreams handlers
//     still running on one connection (streams opened and reset faster than
//     handlers finish) get GOAWAY(ENHANCE_YOUR_CALM).
//   - StreamWindow / ConnWindow (4 MiB / 16 MiB): flow-control windows;
//     a peer that overruns one gets GOAWAY(FLOW_CONTROL_ERROR). What the
//     server buffers for a peer that sends but whose streams nobody reads is
//     bounded by ConnWindow (twice that in receive-chunk memory); what it
//     sends to a peer that never reads is bounded by that peer's windows.
//   - MaxHeaderBytes (16 KiB): a decoded header block somewhat over it is
//     answered 400; far over it (a field longer than it, CONTINUATION frames
//     after it is exceeded) ends the connection with GOAWAY(PROTOCOL_ERROR
//     or COMPRESSION_ERROR); a block longer than 2 × MaxHeaderBytes + 16 KiB
//     on the wire (e.g. endless empty CONTINUATION frames) ends it with
//     GOAWAY(ENHANCE_YOUR_CALM).
//   - MaxFrameSize (256 KiB): larger frames end the connection.
//   - ReadIdleTimeout / PingTimeout (30 s / 15 s): a peer that goes silent,
//     or stops reading so that our writes block, is closed when the PING
//     health check goes unanswered.
package hbone
