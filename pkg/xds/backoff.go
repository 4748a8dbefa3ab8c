package xds

import "time"

// backoff returns how long to wait before reconnect attempt number attempt
// (0-based): base doubled per attempt, capped at max, then jittered into
// [d/2, d) with jitter in [0, 1).
func backoff(attempt int, base, max time.Duration, jitter float64) time.Duration {
	d := base
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if jitter < 0 {
		jitter = 0
	}
	if jitter >= 1 {
		jitter = 0.999
	}
	half := d / 2
	return half + time.Duration(float64(d-half)*jitter)
}
