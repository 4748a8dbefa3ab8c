package identity

import "time"

// Clock is the time source of the manager; tests use a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a stop func.
	After(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
