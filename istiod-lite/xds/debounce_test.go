package xds

import (
	"context"
	"testing"
	"time"
)

func TestDebounceWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const quiet, maxWait = 100 * time.Millisecond, time.Second
	for _, tc := range []struct {
		name             string
		first, last, now time.Time
		want             time.Duration
	}{
		{"single trigger waits quiet", t0, t0, t0, 100 * time.Millisecond},
		{"later trigger extends", t0, ms(50), ms(50), 100 * time.Millisecond},
		{"quiet elapsed fires", t0, ms(50), ms(150), 0},
		{"max wait caps", t0, ms(950), ms(950), 50 * time.Millisecond},
		{"past max wait fires", t0, ms(1100), ms(1100), -100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := debounceWait(tc.first, tc.last, tc.now, quiet, maxWait); got != tc.want {
				t.Errorf("debounceWait = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeClock drives a Debouncer step by step: every timer the debouncer asks
// for is handed to the test, which moves time and fires it.
type fakeClock struct {
	now    time.Time
	timers chan fakeTimer
}

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func newFakeDebouncer() (*Debouncer, *fakeClock) {
	c := &fakeClock{now: time.Unix(1000, 0), timers: make(chan fakeTimer)}
	d := NewDebouncer(0, 0)
	// now is only read by the Run goroutine between two timer hand-offs,
	// which the unbuffered timers channel orders with the test's writes.
	d.now = func() time.Time { return c.now }
	d.after = func(wait time.Duration) <-chan time.Time {
		ft := fakeTimer{d: wait, ch: make(chan time.Time, 1)}
		c.timers <- ft
		return ft.ch
	}
	return d, c
}

func (c *fakeClock) nextTimer(t *testing.T) fakeTimer {
	t.Helper()
	select {
	case ft := <-c.timers:
		return ft
	case <-time.After(10 * time.Second): // liveness deadline only
		t.Fatal("debouncer armed no timer")
		return fakeTimer{}
	}
}

func runDebouncer(t *testing.T, d *Debouncer) (fired chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	fired = make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, func() { fired <- struct{}{} })
	}()
	return fired, func() { cancel(); <-done }
}

func TestDebouncerCoalesces(t *testing.T) {
	d, clk := newFakeDebouncer()
	fired, stop := runDebouncer(t, d)
	defer stop()

	d.Trigger()
	if ft := clk.nextTimer(t); ft.d != 100*time.Millisecond {
		t.Fatalf("first wait = %v, want 100ms", ft.d)
	}
	clk.now = clk.now.Add(50 * time.Millisecond)
	d.Trigger()
	ft := clk.nextTimer(t)
	if ft.d != 100*time.Millisecond {
		t.Fatalf("wait after second trigger = %v, want 100ms", ft.d)
	}
	clk.now = clk.now.Add(100 * time.Millisecond)
	ft.ch <- clk.now
	<-fired

	// The debouncer is idle again: a new trigger arms a new timer, and
	// exactly one fire happened for the two triggers.
	d.Trigger()
	ft = clk.nextTimer(t)
	if n := len(fired); n != 0 {
		t.Errorf("fired %d extra times for one round", n)
	}
	clk.now = clk.now.Add(ft.d)
	ft.ch <- clk.now
	<-fired
}

func TestDebouncerMaxWait(t *testing.T) {
	d, clk := newFakeDebouncer()
	fired, stop := runDebouncer(t, d)
	defer stop()

	start := clk.now
	d.Trigger()
	ft := clk.nextTimer(t)
	// Triggers every 90ms never leave 100ms of quiet; the wait shrinks to
	// honour the 1s maximum.
	for clk.now.Sub(start) < 900*time.Millisecond {
		clk.now = clk.now.Add(90 * time.Millisecond)
		d.Trigger()
		ft = clk.nextTimer(t)
	}
	if want := start.Add(time.Second).Sub(clk.now); ft.d != want {
		t.Fatalf("wait near max = %v, want %v", ft.d, want)
	}
	if len(fired) != 0 {
		t.Fatal("fired before max wait")
	}
	clk.now = clk.now.Add(ft.d)
	ft.ch <- clk.now
	<-fired
}
