package nodelet

import "time"

// Backoff is the crash-loop back-off schedule: the k-th restart since the
// last reset waits Base·2^(k-1), capped at Max; a container that ran for at
// least ResetAfter starts the schedule over. The kubelet uses 10 s, 5 min
// and 10 min (DefaultBackoff); tests use a short Base.
type Backoff struct {
	Base, Max, ResetAfter time.Duration
}

// DefaultBackoff is the kubelet's schedule.
var DefaultBackoff = Backoff{Base: 10 * time.Second, Max: 5 * time.Minute, ResetAfter: 10 * time.Minute}

// Next returns the new step and the delay before the next restart after a
// container that was at step `step` ran for `ranFor` and exited.
func (b Backoff) Next(step int, ranFor time.Duration) (int, time.Duration) {
	if ranFor >= b.ResetAfter {
		step = 0
	}
	step++
	d := b.Base
	for i := 1; i < step && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	return step, d
}
