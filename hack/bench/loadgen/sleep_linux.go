package main

import (
	"syscall"
	"time"
)

// sleepPrecise sleeps for d with a nanosleep(2) on the calling thread: the
// runtime's timers wake up with millisecond granularity when the process is
// idle (epoll_wait's timeout), which at 1,000 req/s would release requests
// up to a millisecond late and count that as latency. The caller locks its
// goroutine to its thread.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
