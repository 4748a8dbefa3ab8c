package filter

import (
	"time"

	"github.com/ambient-mesh/ambient/waypoint/router"
)

// Attempt is the outcome of one upstream attempt.
type Attempt struct {
	// Status is the response status; 0 when no response arrived.
	Status int
	// ConnectFailure: the tunnel to the endpoint could not be opened.
	ConnectFailure bool
	// Reset: the connection failed after it was opened, before headers.
	Reset bool
	// PerTryTimeout: the attempt ran out of its per-try time.
	PerTryTimeout bool
	// GRPCStatus is the grpc-status of a trailers-only response, -1 if none.
	GRPCStatus int
}

// ShouldRetry decides whether to retry after attempt number n (1-based)
// with outcome a: the policy allows more retries, the request can be sent
// again (its body was buffered or never read), the route's overall
// deadline leaves time, and the outcome matches a retry_on condition.
// Envoy's per-try timeout counts as a 504 for "5xx"/"gateway-error".
func ShouldRetry(p *router.RetryPolicy, n int, a Attempt, replayable bool, left time.Duration) bool {
	if p == nil || n > p.Retries || !replayable || left <= 0 {
		return false
	}
	switch {
	case a.ConnectFailure:
		return p.RetriableConnectFailure()
	case a.PerTryTimeout:
		return hasCond(p, "5xx", "gateway-error")
	case a.Reset:
		return hasCond(p, "5xx", "gateway-error", "reset")
	}
	if a.GRPCStatus >= 0 {
		switch a.GRPCStatus {
		case 14:
			if hasCond(p, "unavailable") {
				return true
			}
		case 1:
			if hasCond(p, "cancelled") {
				return true
			}
		}
	}
	return a.Status != 0 && p.RetriableStatus(a.Status)
}

func hasCond(p *router.RetryPolicy, conds ...string) bool {
	for _, c := range p.RetryOn {
		for _, w := range conds {
			if c == w {
				return true
			}
		}
	}
	return false
}
