package identity

import (
	"context"
	"errors"
	"io/fs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LikelyCause turns a fetch error into the operator's next step, for the
// error log of a failing renewal. It looks at the gRPC status the CA
// returned (wrapped errors included) and at local failures.
func LikelyCause(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return "the CA token file cannot be read: check the istio-token projected volume of ztunnel"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the CA did not answer in time: check that istiod-lite is running and reachable"
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		switch se.GRPCStatus().Code() {
		case codes.Unauthenticated:
			return "the CA rejected the token: check the token audience (istio-ca) and that it has not expired"
		case codes.PermissionDenied:
			return "the CA refused this identity: the pod may have left this node or the node proxy may not impersonate it"
		case codes.Unavailable, codes.DeadlineExceeded:
			return "the CA is unreachable or overloaded: check istiod-lite and the CA address"
		case codes.FailedPrecondition:
			return "the CA cannot sign: its signing certificate is expired or not yet valid; rotate cacerts"
		case codes.InvalidArgument:
			return "the CA refused the request as malformed: check the requested lifetime and key type"
		}
	}
	return "unknown: see the error"
}
