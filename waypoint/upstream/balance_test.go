package upstream

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/state"
)

func TestChoose(t *testing.T) {
	now := time.Unix(1000, 0)
	later := now.Add(time.Minute)
	ok := Host{Healthy: true}
	ejected := Host{Healthy: true, EjectedUntil: later}
	expired := Host{Healthy: true, EjectedUntil: now}
	sick := Host{}
	for _, tc := range []struct {
		name  string
		hosts []Host
		lb    state.LBPolicy
		rr    uint64
		want  []int // acceptable answers
	}{
		{"none", nil, state.RoundRobin, 0, []int{-1}},
		{"rr first", []Host{ok, ok, ok}, state.RoundRobin, 0, []int{0}},
		{"rr wraps", []Host{ok, ok, ok}, state.RoundRobin, 4, []int{1}},
		{"rr skips ejected", []Host{ejected, ok, ok}, state.RoundRobin, 0, []int{1}},
		{"ejection over", []Host{expired, ok}, state.RoundRobin, 0, []int{0}},
		{"rr skips unhealthy", []Host{sick, sick, ok}, state.RoundRobin, 1, []int{2}},
		{"all ejected: panic mode uses healthy", []Host{ejected, sick}, state.RoundRobin, 0, []int{0}},
		{"all unhealthy: panic mode uses all", []Host{sick, sick}, state.RoundRobin, 1, []int{1}},
		{"least request prefers idle", []Host{{Healthy: true, Active: 5}, {Healthy: true}}, state.LeastRequest, 0, []int{0, 1}},
		{"least request single", []Host{ejected, {Healthy: true, Active: 9}}, state.LeastRequest, 0, []int{1}},
	} {
		got := Choose(tc.hosts, tc.lb, now, tc.rr, rand.New(rand.NewPCG(1, 1)))
		found := false
		for _, w := range tc.want {
			found = found || got == w
		}
		if !found {
			t.Errorf("%s: Choose = %d, want one of %v", tc.name, got, tc.want)
		}
	}
}

// Least request never picks the busier of two hosts when both are drawn;
// over many draws the idle host wins clearly.
func TestChooseLeastRequestBias(t *testing.T) {
	hosts := []Host{{Healthy: true, Active: 10}, {Healthy: true}}
	rnd := rand.New(rand.NewPCG(7, 7))
	idle := 0
	for range 1000 {
		if Choose(hosts, state.LeastRequest, time.Now(), 0, rnd) == 1 {
			idle++
		}
	}
	if idle < 700 { // expected 3/4
		t.Errorf("idle host picked %d/1000 times, want ~750", idle)
	}
}

func TestObserve(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := state.Outlier{Consecutive5xx: 3, BaseEjection: 30 * time.Second, MaxEjectionPercent: 50}
	for _, tc := range []struct {
		name           string
		in             OutlierState
		failure        bool
		ejected, total int
		want           OutlierState
		eject          bool
	}{
		{"success resets", OutlierState{Consecutive: 2}, false, 0, 4, OutlierState{}, false},
		{"failure counts", OutlierState{Consecutive: 1}, true, 0, 4, OutlierState{Consecutive: 2}, false},
		{"third failure ejects", OutlierState{Consecutive: 2}, true, 0, 4,
			OutlierState{Ejections: 1, EjectedUntil: now.Add(30 * time.Second)}, true},
		{"second ejection is longer", OutlierState{Consecutive: 2, Ejections: 1}, true, 0, 4,
			OutlierState{Ejections: 2, EjectedUntil: now.Add(60 * time.Second)}, true},
		{"max percent reached", OutlierState{Consecutive: 2}, true, 2, 4, OutlierState{Consecutive: 3}, false},
		{"at least one may be ejected", OutlierState{Consecutive: 2}, true, 0, 1,
			OutlierState{Ejections: 1, EjectedUntil: now.Add(30 * time.Second)}, true},
		{"already ejected", OutlierState{Consecutive: 5, Ejections: 1, EjectedUntil: now.Add(time.Second)}, true, 1, 4,
			OutlierState{Consecutive: 6, Ejections: 1, EjectedUntil: now.Add(time.Second)}, false},
	} {
		got, ej := Observe(tc.in, tc.failure, now, cfg, tc.ejected, tc.total)
		if got != tc.want || ej != tc.eject {
			t.Errorf("%s: Observe = %+v %v, want %+v %v", tc.name, got, ej, tc.want, tc.eject)
		}
	}
	if _, ej := Observe(OutlierState{Consecutive: 100}, true, now, state.Outlier{}, 0, 1); ej {
		t.Error("zero config ejected")
	}
}

func TestBalancerEjectsAndKeepsState(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBalancer(state.Outlier{Consecutive5xx: 2, BaseEjection: time.Minute, MaxEjectionPercent: 50})
	b.Now = func() time.Time { return now }
	ep := func(s string) *state.Endpoint {
		return &state.Endpoint{Address: netip.MustParseAddrPort(s), Healthy: true}
	}
	c := &state.Cluster{Name: "c", Endpoints: []*state.Endpoint{ep("10.0.0.1:80"), ep("10.0.0.2:80")}}
	// Endpoint 1 fails twice in a row: ejected.
	for range 4 {
		p := b.Pick(c)
		p.Done(p.Endpoint.Address.Addr().String() == "10.0.0.1")
	}
	for range 5 {
		if p := b.Pick(c); p.Endpoint.Address.String() != "10.0.0.2:80" {
			t.Fatalf("picked ejected %v", p.Endpoint.Address)
		} else {
			p.Done(false)
		}
	}
	// A new snapshot with the same endpoints keeps the ejection.
	c2 := &state.Cluster{Name: "c", Endpoints: []*state.Endpoint{ep("10.0.0.1:80"), ep("10.0.0.2:80"), ep("10.0.0.3:80")}}
	seen := map[string]int{}
	for range 6 {
		p := b.Pick(c2)
		seen[p.Endpoint.Address.String()]++
		p.Done(false)
	}
	if seen["10.0.0.1:80"] != 0 || seen["10.0.0.2:80"] != 3 || seen["10.0.0.3:80"] != 3 {
		t.Errorf("picks after update = %v", seen)
	}
	now = now.Add(2 * time.Minute)
	seen = map[string]int{}
	for range 6 {
		p := b.Pick(c2)
		seen[p.Endpoint.Address.String()]++
		p.Done(false)
	}
	if seen["10.0.0.1:80"] != 2 {
		t.Errorf("after the ejection: %v", seen)
	}
	if b.Pick(&state.Cluster{Name: "empty"}) != nil {
		t.Error("picked from an empty cluster")
	}
}
