// Package relay copies bytes both ways between two connections, the data
// path of every ztunnel proxy: a client socket and an HBONE stream, or two
// TCP sockets.
//
// Each direction uses the cheapest copy available: an HBONE stream's
// CopyTo/ReadFrom (whole received chunks, frames that fill TLS records; to
// a TCP socket the stream's read loop writes small frames itself, with no
// goroutine hand-off),
// splice(2) between two TCP sockets (net.TCPConn.ReadFrom), otherwise a
// pooled 64 KiB buffer. A clean end of one direction (EOF) is propagated as
// a half-close (CloseWrite) to the other side, so protocols that half-close
// keep working; an error in either direction aborts both (a TCP socket with
// RST, an HBONE stream with RST_STREAM). Bytes are counted into caller-owned
// atomic counters, live for HBONE and buffered copies, at the end for
// spliced TCP↔TCP copies.
package relay
