package filter

import (
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
)

// Header names the waypoint reads or writes.
const (
	HeaderTraceparent   = "Traceparent"
	HeaderRequestID     = "X-Request-Id"
	HeaderForwardedFor  = "X-Forwarded-For"
	HeaderForwardedProt = "X-Forwarded-Proto"
	HeaderUpstreamTime  = "X-Envoy-Upstream-Service-Time"
	HeaderOverloaded    = "X-Envoy-Overloaded"
)

// NextTraceparent returns the traceparent to send upstream for an incoming
// one (W3C Trace Context, version 00): same trace id and flags, the parent
// id replaced by spanID (the waypoint's span). ok is false when in is not a
// valid traceparent (then none is sent: tracing is the client's choice).
func NextTraceparent(in string, spanID [8]byte) (string, bool) {
	in = strings.TrimSpace(in)
	// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
	if len(in) < 55 || in[2] != '-' || in[35] != '-' || in[52] != '-' {
		return "", false
	}
	version, trace, parent, flags := in[:2], in[3:35], in[36:52], in[53:55]
	if !isLowerHex(version) || version == "ff" || !isLowerHex(trace) || !isLowerHex(parent) || !isLowerHex(flags) {
		return "", false
	}
	if version == "00" && len(in) != 55 {
		return "", false
	}
	if trace == "00000000000000000000000000000000" || parent == "0000000000000000" {
		return "", false
	}
	if spanID == [8]byte{} {
		spanID[7] = 1
	}
	var b [55]byte
	copy(b[:], "00-")
	copy(b[3:], trace)
	b[35] = '-'
	hex.Encode(b[36:52], spanID[:])
	b[52] = '-'
	copy(b[53:], flags)
	return string(b[:]), true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// RequestID formats 16 random bytes as a version 4 UUID, as Envoy's
// x-request-id.
func RequestID(r [16]byte) string {
	r[6] = r[6]&0x0f | 0x40
	r[8] = r[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], r[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], r[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], r[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], r[8:10])
	b[23] = '-'
	hex.Encode(b[24:], r[10:])
	return string(b[:])
}

// AppendForwardedFor appends the client address to X-Forwarded-For, as
// Envoy does with use_remote_address (the waypoint's downstream is the
// original client behind its ztunnel). An invalid addr changes nothing.
func AppendForwardedFor(h http.Header, client netip.Addr) {
	if !client.IsValid() {
		return
	}
	a := client.Unmap().String()
	if prior := h.Values(HeaderForwardedFor); len(prior) > 0 {
		h.Set(HeaderForwardedFor, strings.Join(prior, ", ")+", "+a)
		return
	}
	h.Set(HeaderForwardedFor, a)
}

// IsGRPC reports whether a request's content type is gRPC.
func IsGRPC(contentType string) bool {
	return strings.HasPrefix(contentType, "application/grpc") &&
		(len(contentType) == 16 || contentType[16] == '+' || contentType[16] == ';')
}

// GRPCStatus is the gRPC status code Envoy uses when it answers a gRPC
// request itself with an HTTP status (grpc/doc/http-grpc-status-mapping).
func GRPCStatus(httpStatus int) int {
	switch httpStatus {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	default:
		return 2 // UNKNOWN
	}
}

// UpstreamHTTP2 decides the upstream protocol: HTTP/2 when the cluster
// says so, or for gRPC (which needs HTTP/2) arriving over HTTP/2.
func UpstreamHTTP2(clusterHTTP2, grpc bool, downstreamMajor int) bool {
	return clusterHTTP2 || (grpc && downstreamMajor == 2)
}
