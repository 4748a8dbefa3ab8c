package client

import (
	"math"
	"sort"
	"strconv"
	"time"
)

// MaxErrorSamples bounds Result.ErrorSamples.
const MaxErrorSamples = 5

// Result sums up a run; it is printed as one JSON object.
//
// Every request is either a response (the server, or a proxy on the way,
// answered: any HTTP status, any gRPC status sent with echo metadata or
// other than Unavailable/DeadlineExceeded/Canceled, a complete TCP echo)
// or an error (no answer). OK counts responses that succeeded (HTTP 2xx,
// gRPC OK, TCP echo intact). So Total = Responses + Errors.
type Result struct {
	Target    string `json:"target"`
	Total     int    `json:"total"`
	OK        int    `json:"ok"`
	Responses int    `json:"responses"`
	Errors    int    `json:"errors"`
	// ByResponder counts responses by the answering pod (x-echo-pod);
	// answers without one (e.g. from a proxy) are not counted.
	ByResponder map[string]int `json:"byResponder"`
	// ByVersion counts responses by x-echo-version, when not empty.
	ByVersion map[string]int `json:"byVersion"`
	// ByCode counts responses by HTTP status ("200") or gRPC code name
	// ("OK", "PermissionDenied"); empty for tcp.
	ByCode map[string]int `json:"byCode"`
	// ErrorSamples holds up to MaxErrorSamples distinct error strings.
	ErrorSamples []string `json:"errorSamples"`
	// LatencyMs are over responses only (milliseconds).
	LatencyMs Latency `json:"latencyMs"`
	// SeenHeaders are the request headers (HTTP, canonical keys) or
	// metadata (gRPC) an echo server reported seeing, from one successful
	// answer: what proxies on the way added shows here. Omitted when no
	// answer succeeded (and for tcp).
	SeenHeaders map[string]string `json:"seenHeaders,omitempty"`
}

// Latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// ExitCode is 0 when every request got a response (or allowErrors), else 1.
func (r Result) ExitCode(allowErrors bool) int {
	if allowErrors || (r.Errors == 0 && r.Responses == r.Total) {
		return 0
	}
	return 1
}

// outcome is what one request gave.
type outcome struct {
	responded bool
	ok        bool
	// code is the HTTP status or gRPC code name; empty for tcp.
	code    string
	pod     string
	version string
	err     error
	latency time.Duration
	// seen are the headers / metadata the server reported (may be nil).
	seen map[string]string
}

// aggregate sums outcomes up.
func aggregate(target string, outs []outcome) Result {
	r := Result{
		Target:       target,
		Total:        len(outs),
		ByResponder:  map[string]int{},
		ByVersion:    map[string]int{},
		ByCode:       map[string]int{},
		ErrorSamples: []string{},
	}
	seen := map[string]bool{}
	var lat []time.Duration
	for _, o := range outs {
		if !o.responded {
			r.Errors++
			msg := "unknown error"
			if o.err != nil {
				msg = o.err.Error()
			}
			if !seen[msg] && len(r.ErrorSamples) < MaxErrorSamples {
				seen[msg] = true
				r.ErrorSamples = append(r.ErrorSamples, msg)
			}
			continue
		}
		r.Responses++
		if o.ok {
			r.OK++
			if r.SeenHeaders == nil && o.seen != nil {
				r.SeenHeaders = o.seen
			}
		}
		if o.pod != "" {
			r.ByResponder[o.pod]++
		}
		if o.version != "" {
			r.ByVersion[o.version]++
		}
		if o.code != "" {
			r.ByCode[o.code]++
		}
		lat = append(lat, o.latency)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.LatencyMs = Latency{
		P50: ms(percentile(lat, 50)),
		P90: ms(percentile(lat, 90)),
		P99: ms(percentile(lat, 99)),
		Max: ms(percentile(lat, 100)),
	}
	return r
}

// percentile returns the nearest-rank p-th percentile of sorted (0 when
// empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts to milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

func httpCode(code int) string { return strconv.Itoa(code) }
