package xds

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const base, max = 100 * time.Millisecond, 30 * time.Second
	for _, tc := range []struct {
		name    string
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{"first attempt no jitter", 0, 0, 50 * time.Millisecond},
		{"first attempt half jitter", 0, 0.5, 75 * time.Millisecond},
		{"doubles", 3, 0, 400 * time.Millisecond},
		{"capped", 20, 0, 15 * time.Second},
		{"capped full jitter stays below cap", 20, 0.999, 15*time.Second + time.Duration(float64(15*time.Second)*0.999)},
		{"huge attempt does not overflow", 1 << 30, 0, 15 * time.Second},
		{"jitter out of range clamps", 0, 7, 50*time.Millisecond + time.Duration(float64(50*time.Millisecond)*0.999)},
		{"negative jitter clamps", 0, -1, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.attempt, base, max, tc.jitter); got != tc.want {
				t.Errorf("backoff(%d, jitter %v) = %v, want %v", tc.attempt, tc.jitter, got, tc.want)
			}
		})
	}
}
