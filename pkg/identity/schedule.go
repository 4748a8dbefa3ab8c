package identity

import "time"

// refreshAt is when a certificate received at received and valid until
// notAfter is renewed: at half its remaining life, moved by jitter (a
// fraction, e.g. ±0.1). The start is the later of NotBefore and the receipt,
// since CAs backdate NotBefore to tolerate clock skew.
func refreshAt(notBefore, notAfter, received time.Time, jitter float64) time.Time {
	start := notBefore
	if received.After(start) {
		start = received
	}
	life := notAfter.Sub(start)
	if life <= 0 {
		return received
	}
	half := time.Duration(float64(life) / 2 * (1 + jitter))
	return start.Add(half)
}

// backoff is the wait before retry number attempt (1 = the first retry):
// initial doubled per attempt, capped at maxWait, moved by jitter (a fraction).
func backoff(attempt int, initial, maxWait time.Duration, jitter float64) time.Duration {
	d := initial
	for i := 1; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return time.Duration(float64(d) * (1 + jitter))
}
