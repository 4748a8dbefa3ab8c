package xds

import (
	"context"
	"time"
)

// Default debounce timings: a rebuild waits for 100 ms without triggers, but
// never more than 1 s after the first trigger.
const (
	DefaultDebounceQuiet   = 100 * time.Millisecond
	DefaultDebounceMaxWait = time.Second
)

// Debouncer coalesces model rebuild triggers: after a Trigger it waits until
// no trigger came for Quiet, or MaxWait passed since the first one, then calls
// the fire function once. Triggers arriving while fire runs start a new round.
type Debouncer struct {
	quiet, maxWait time.Duration
	trig           chan struct{}

	// now and after are the clock; tests replace them.
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// NewDebouncer returns a debouncer; zero durations take the defaults.
func NewDebouncer(quiet, maxWait time.Duration) *Debouncer {
	if quiet <= 0 {
		quiet = DefaultDebounceQuiet
	}
	if maxWait <= 0 {
		maxWait = DefaultDebounceMaxWait
	}
	if maxWait < quiet {
		maxWait = quiet
	}
	return &Debouncer{quiet: quiet, maxWait: maxWait, trig: make(chan struct{}, 1), now: time.Now, after: time.After}
}

// Trigger requests a rebuild; it never blocks.
func (d *Debouncer) Trigger() {
	select {
	case d.trig <- struct{}{}:
	default: // one pending trigger is enough
	}
}

// Run calls fire (in Run's goroutine) for each debounced round of triggers
// until ctx is cancelled.
func (d *Debouncer) Run(ctx context.Context, fire func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.trig:
		}
		first := d.now()
		last := first
		for {
			wait := debounceWait(first, last, d.now(), d.quiet, d.maxWait)
			if wait <= 0 {
				break
			}
			timer := d.after(wait)
			select {
			case <-ctx.Done():
				return
			case <-d.trig:
				last = d.now()
			case <-timer:
			}
		}
		fire()
	}
}

// debounceWait is how long to wait before firing: until Quiet after the last
// trigger, but not past MaxWait after the first; <= 0 means fire now.
func debounceWait(first, last, now time.Time, quiet, maxWait time.Duration) time.Duration {
	deadline := last.Add(quiet)
	if hard := first.Add(maxWait); hard.Before(deadline) {
		deadline = hard
	}
	return deadline.Sub(now)
}
