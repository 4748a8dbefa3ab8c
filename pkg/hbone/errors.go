package hbone

import (
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/net/http2"
)

// Errors a Dial or a stream returns; test them with errors.Is.
var (
	// ErrBadRequest: the peer answered 400 (not CONNECT or a bad :authority).
	ErrBadRequest = errors.New("HBONE request refused as malformed (400)")
	// ErrDenied: the peer answered 401, its authorization policy denies the source identity.
	ErrDenied = errors.New("HBONE connection denied by the destination's authorization policy (401); check AuthorizationPolicy for the destination workload")
	// ErrUpstreamUnreachable: the peer answered 503, it could not connect to the destination.
	ErrUpstreamUnreachable = errors.New("HBONE peer could not reach the destination (503); is the destination pod running and listening on that port?")
	// ErrPeerIdentity: the peer's certificate is valid but names an unexpected identity.
	ErrPeerIdentity = errors.New("HBONE peer presented an unexpected identity")
	// ErrStreamReset: the peer reset the stream.
	ErrStreamReset = errors.New("HBONE stream reset by peer")
	// ErrConnClosed: the HTTP/2 connection carrying the stream closed or broke.
	ErrConnClosed = errors.New("HBONE connection closed")
	// ErrClosed: the stream was closed locally.
	ErrClosed = errors.New("HBONE stream closed")
	// ErrWriteAfterCloseWrite: Write after CloseWrite.
	ErrWriteAfterCloseWrite = errors.New("HBONE stream write after CloseWrite")
	// ErrServerClosed is returned by Server.Serve after Shutdown or Close.
	ErrServerClosed = errors.New("HBONE server closed")
)

// StatusError is a non-200 answer to a CONNECT request. It matches
// ErrBadRequest, ErrDenied or ErrUpstreamUnreachable with errors.Is.
type StatusError struct {
	Status    int
	Peer      string // HBONE peer address
	Authority string // requested destination
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("HBONE CONNECT %s via %s: status %d %s", e.Authority, e.Peer, e.Status, http.StatusText(e.Status))
	if s := e.sentinel(); s != nil {
		msg += ": " + s.Error()
	}
	return msg
}

func (e *StatusError) sentinel() error {
	switch e.Status {
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrDenied
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return ErrUpstreamUnreachable
	}
	return nil
}

// Is makes errors.Is(err, ErrDenied) and friends work.
func (e *StatusError) Is(target error) bool { s := e.sentinel(); return s != nil && s == target }

// DialError is a failure to set up the HBONE connection (TCP or TLS) to a
// peer. Its message carries a hint about the likely cause.
type DialError struct {
	Peer string
	Op   string // "dial", "tls", "identity", "cert" (also an expired certificate: ErrCertExpired)
	Err  error
}

func (e *DialError) Error() string {
	switch e.Op {
	case "dial":
		return fmt.Sprintf("dial HBONE peer %s: %v (is HBONE port 15008 reachable? maybe a NetworkPolicy blocks it)", e.Peer, e.Err)
	case "tls":
		return fmt.Sprintf("TLS handshake with HBONE peer %s: %v (do both sides trust the same root CA and trust domain, and are the certificates current?)", e.Peer, e.Err)
	case "cert":
		if errors.Is(e.Err, ErrCertExpired) {
			return fmt.Sprintf("HBONE peer %s: %v", e.Peer, e.Err)
		}
		return fmt.Sprintf("get client certificate for HBONE peer %s: %v (has the identity's certificate been issued yet?)", e.Peer, e.Err)
	default:
		return fmt.Sprintf("HBONE peer %s: %s: %v", e.Peer, e.Op, e.Err)
	}
}

func (e *DialError) Unwrap() error { return e.Err }

// resetError is a stream reset with an HTTP/2 error code.
type resetError struct {
	code   http2.ErrCode
	remote bool
}

func (e resetError) Error() string {
	if e.remote {
		return "HBONE stream reset by peer: " + e.code.String()
	}
	return "HBONE stream reset: " + e.code.String()
}

func (e resetError) Is(target error) bool { return e.remote && target == ErrStreamReset }

// errRetry marks a stream that the peer never processed (REFUSED_STREAM,
// beyond a GOAWAY, or the connection broke before the request was sent);
// Dial retries it on another connection.
var errRetry = errors.New("HBONE stream not processed by peer")

// retryError is errRetry with its cause.
type retryError struct{ cause error }

func (e retryError) Error() string {
	if e.cause == nil {
		return errRetry.Error()
	}
	return errRetry.Error() + ": " + e.cause.Error()
}
func (e retryError) Is(target error) bool { return target == errRetry }
func (e retryError) Unwrap() error        { return e.cause }

// retryable reports whether Dial may try err again on another connection:
// the peer never processed the stream and did not refuse us in TLS.
func retryable(err error) bool {
	var de *DialError
	return errors.Is(err, errRetry) && !errors.As(err, &de)
}
