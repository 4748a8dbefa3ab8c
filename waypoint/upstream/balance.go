package upstream

import (
	"math/rand/v2"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/state"
)

// Host is what endpoint choice looks at for one endpoint.
type Host struct {
	Healthy      bool
	EjectedUntil time.Time // ejected while now is before it
	Active       int       // requests in flight
}

func (h Host) ejected(now time.Time) bool { return now.Before(h.EjectedUntil) }

// Choose picks an endpoint index among hosts, or -1 when there are none.
// Candidates are the healthy, not ejected hosts; if there are none, the
// healthy ones; then all (Envoy's panic mode: better to try than to fail
// locally). Round robin takes candidate rr mod n; least request compares
// two random candidates and takes the one with fewer active requests.
func Choose(hosts []Host, lb state.LBPolicy, now time.Time, rr uint64, rnd *rand.Rand) int {
	var buf [16]int
	cand := buf[:0]
	for pass := 0; pass < 3 && len(cand) == 0; pass++ {
		for i, h := range hosts {
			switch {
			case pass == 0 && (!h.Healthy || h.ejected(now)),
				pass == 1 && !h.Healthy:
				continue
			}
			cand = append(cand, i)
		}
	}
	switch {
	case len(cand) == 0:
		return -1
	case len(cand) == 1:
		return cand[0]
	case lb == state.LeastRequest:
		a, b := cand[rnd.IntN(len(cand))], cand[rnd.IntN(len(cand))]
		if hosts[b].Active < hosts[a].Active {
			return b
		}
		return a
	default:
		return cand[rr%uint64(len(cand))]
	}
}

// OutlierState is the outlier-detection state of one endpoint.
type OutlierState struct {
	Consecutive  uint32 // consecutive failures
	Ejections    uint32 // times ejected so far
	EjectedUntil time.Time
}

// Observe records one result (failure: a 5xx answer or a connect failure)
// and returns the new state and whether the endpoint was ejected just now.
// ejected and total count the cluster's endpoints currently ejected and
// all of them; at most cfg.MaxEjectionPercent of them are ejected at once,
// but always at least one may be. The ejection lasts BaseEjection times
// the number of ejections.
func Observe(s OutlierState, failure bool, now time.Time, cfg state.Outlier, ejected, total int) (OutlierState, bool) {
	if !failure {
		s.Consecutive = 0
		return s, false
	}
	s.Consecutive++
	if cfg.Consecutive5xx == 0 || s.Consecutive < cfg.Consecutive5xx || now.Before(s.EjectedUntil) {
		return s, false
	}
	if ejected > 0 && (ejected+1)*100 > int(cfg.MaxEjectionPercent)*total {
		return s, false
	}
	s.Ejections++
	s.Consecutive = 0
	s.EjectedUntil = now.Add(cfg.BaseEjection * time.Duration(s.Ejections))
	return s, true
}
