package main

import (
	"math"
	"time"
)

// Schedule is the fixed-rate plan of an open-loop run: request i is due at
// Start + i/Rate, for the requests due before Start + Duration.
type Schedule struct {
	Start    time.Time
	Rate     float64 // requests per second, > 0
	Duration time.Duration
}

// Count is the number of requests in the run.
func (s Schedule) Count() int {
	return int(math.Ceil(s.Duration.Seconds()*s.Rate - 1e-9))
}

// Due is when request i is due.
func (s Schedule) Due(i int) time.Time {
	return s.Start.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
}

// DueBy returns how many requests are due at now (requests 0..n-1), capped at
// Count: the pacer releases every request up to that one when it wakes up,
// so a late wake-up sends the overdue ones at once instead of drifting.
func (s Schedule) DueBy(now time.Time) int {
	if now.Before(s.Start) {
		return 0
	}
	n := int(math.Floor(now.Sub(s.Start).Seconds()*s.Rate+1e-9)) + 1
	return min(n, s.Count())
}
