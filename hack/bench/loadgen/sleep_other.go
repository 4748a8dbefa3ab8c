//go:build !linux

package main

import "time"

// sleepPrecise is time.Sleep where nanosleep(2) is not wired up.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
