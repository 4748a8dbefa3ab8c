package knobs

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// Limits on knob values.
const (
	MaxDelay = 5 * time.Minute
	MaxSize  = 16 << 20
	// MaxFailEvery bounds the fail-every knob.
	MaxFailEvery = 1000
)

// Knobs is what a request asks the server to do. Zero values mean "not
// asked".
type Knobs struct {
	// Status is the HTTP status code to answer with (0: 200).
	Status int
	// Delay is slept before answering.
	Delay time.Duration
	// Fail is the probability (0..1) of answering 503 / Unavailable.
	Fail float64
	// FailEvery (N > 0) answers 503 / Unavailable to the 1st, N+1st,
	// 2N+1st... request carrying this knob, counted per server; so 2 fails
	// exactly one request in two.
	FailEvery int
	// Size is the minimum HTTP body size in bytes.
	Size int
	// GRPCCode is the gRPC status code to answer with; HasGRPCCode tells
	// whether it was asked (0 is OK).
	GRPCCode    int
	HasGRPCCode bool
}

// Parse reads the knobs from query parameters and headers (a query
// parameter wins over the header of the same knob). header may hold gRPC
// metadata (lower-case keys); lookups are case-insensitive.
func Parse(query url.Values, header http.Header) (Knobs, error) {
	get := func(name string) (string, bool) {
		if vs, ok := query[name]; ok && len(vs) > 0 {
			return vs[0], true
		}
		want := api.KnobHeaderPrefix + name
		for k, vs := range header {
			if strings.EqualFold(k, want) && len(vs) > 0 {
				return vs[0], true
			}
		}
		return "", false
	}
	var k Knobs
	if v, ok := get(api.KnobStatus); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 200 || n > 599 {
			return Knobs{}, fmt.Errorf("knob %s=%q: want an HTTP status code 200..599", api.KnobStatus, v)
		}
		k.Status = n
	}
	if v, ok := get(api.KnobDelay); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 || d > MaxDelay {
			return Knobs{}, fmt.Errorf("knob %s=%q: want a duration like 250ms or 2s, at most %s", api.KnobDelay, v, MaxDelay)
		}
		k.Delay = d
	}
	if v, ok := get(api.KnobFail); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || f > 1 {
			return Knobs{}, fmt.Errorf("knob %s=%q: want a probability 0..1", api.KnobFail, v)
		}
		k.Fail = f
	}
	if v, ok := get(api.KnobFailEvery); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > MaxFailEvery {
			return Knobs{}, fmt.Errorf("knob %s=%q: want a request count 1..%d", api.KnobFailEvery, v, MaxFailEvery)
		}
		k.FailEvery = n
	}
	if v, ok := get(api.KnobSize); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > MaxSize {
			return Knobs{}, fmt.Errorf("knob %s=%q: want a byte count 0..%d", api.KnobSize, v, MaxSize)
		}
		k.Size = n
	}
	if v, ok := get(api.KnobGRPCCode); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 16 {
			return Knobs{}, fmt.Errorf("knob %s=%q: want a gRPC status code 0..16", api.KnobGRPCCode, v)
		}
		k.GRPCCode, k.HasGRPCCode = n, true
	}
	return k, nil
}

// ShouldFail decides whether a request with fail probability p fails, given
// r drawn uniformly from [0, 1).
func ShouldFail(p, r float64) bool {
	return r < p
}

// ShouldFailEvery decides whether the n-th request (counted from 1) that
// carries fail-every=every fails: the 1st, every+1st, 2*every+1st...
func ShouldFailEvery(every int, n uint64) bool {
	return every > 0 && n > 0 && (n-1)%uint64(every) == 0
}
