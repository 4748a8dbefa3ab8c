package main

import (
	"fmt"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. It is 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// rank = ceil(p/100 * n), computed in integers to avoid float rounding
	// turning 99% of 100 into rank 100.
	milli := int64(p*1000 + 0.5) // p in thousandths of a percent
	rank := int((milli*int64(n) + 100_000 - 1) / 100_000)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Result is the outcome of one run.
type Result struct {
	Requests  int // answered without error
	Errors    int
	Elapsed   time.Duration
	Latencies []time.Duration // of the answered requests, any order
}

// Line formats r as the one machine-readable output line.
func (r Result) Line() string {
	lat := slices.Clone(r.Latencies)
	slices.Sort(lat)
	us := func(p float64) int64 { return Percentile(lat, p).Microseconds() }
	rps := 0.0
	if r.Elapsed > 0 {
		rps = float64(r.Requests) / r.Elapsed.Seconds()
	}
	maxUS := int64(0)
	if len(lat) > 0 {
		maxUS = lat[len(lat)-1].Microseconds()
	}
	return fmt.Sprintf("rps=%.1f requests=%d errors=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d",
		rps, r.Requests, r.Errors, us(50), us(90), us(99), us(99.9), maxUS)
}
