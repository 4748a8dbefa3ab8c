package route

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/ztunnel/state"
)

func BenchmarkRouteServiceVIP(b *testing.B) {
	snap := fixture(b)
	src := snap.WorkloadByUID("sleep")
	dst := ap("10.96.0.41:80")
	opts := Options{Rand: rand.New(rand.NewPCG(1, 2))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Route(snap, src, dst, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteService1000Endpoints: a service with 1000 pods over 10
// nodes, the source on one of them.
func BenchmarkRouteService1000Endpoints(b *testing.B) {
	up := map[string]*workloadapi.Address{
		"default/big": service("default", "big", "10.96.1.1", 80, 8080),
		"client":      workload("client", "node-3", []string{"10.1.0.1"}),
	}
	for i := range 1000 {
		uid := fmt.Sprintf("big-%d", i)
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}).String()
		up[uid] = workload(uid, fmt.Sprintf("node-%d", i%10), []string{a}, member("big"))
	}
	s := state.NewStore()
	if err := s.ApplyAddresses(up, nil); err != nil {
		b.Fatal(err)
	}
	snap := s.Snapshot()
	src, dst := snap.WorkloadByUID("client"), ap("10.96.1.1:80")
	opts := Options{Rand: rand.New(rand.NewPCG(1, 2))}
	b.ReportAllocs()
	for b.Loop() {
		d, err := Route(snap, src, dst, opts)
		if err != nil || !d.SameNode {
			b.Fatal(d, err)
		}
	}
}

func TestRouteHappyPathAllocs(t *testing.T) {
	snap := fixture(t)
	src, dst := snap.WorkloadByUID("sleep"), ap("10.96.0.41:80")
	opts := Options{Rand: rand.New(rand.NewPCG(1, 2))}
	if n := testing.AllocsPerRun(100, func() { _, _ = Route(snap, src, dst, opts) }); n != 0 {
		t.Errorf("Route allocates %v times, want 0", n)
	}
}
