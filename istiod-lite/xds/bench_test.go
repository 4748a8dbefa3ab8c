package xds

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

const (
	benchWorkloads = 10000
	benchServices  = 1000
)

func benchHarness(b *testing.B) (*harness, map[string]proto.Message) {
	state := addresses(benchWorkloads, benchServices)
	h := startHarness(b, "127.0.0.1:0", zap.NewNop(), func(s *Server) {
		if err := s.SetResources(pkgxds.AddressType, state); err != nil {
			b.Fatal(err)
		}
	})
	return h, state
}

// BenchmarkFullStateNewClient: time for a new client to receive (and
// decode) the full Address state of 10,000 workloads + 1,000 services.
func BenchmarkFullStateNewClient(b *testing.B) {
	h, state := benchHarness(b)
	defer h.stop()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cl := startClient(b, zap.NewNop(), ztunnelConfig(h.addr))
		u := cl.addrs.next(b)
		elapsed := u.at.Sub(start)
		b.StopTimer()
		if len(u.upserts) != len(state) {
			b.Fatalf("full state has %d resources, want %d", len(u.upserts), len(state))
		}
		if i == 0 {
			b.Logf("first client of this run: %v", elapsed)
		}
		total += elapsed
		cl.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/fullstate")
}

// BenchmarkPushLatency50Clients: with 50 clients holding the full state,
// time from SetResources (whole 11,000-resource set, one workload changed)
// to the change being handed to each client's handler.
func BenchmarkPushLatency50Clients(b *testing.B) {
	const nClients = 50
	h, state := benchHarness(b)
	defer h.stop()
	clients := make([]*client, nClients)
	for i := range clients {
		clients[i] = startClient(b, zap.NewNop(), ztunnelConfig(h.addr))
		clients[i].addrs.next(b) // full state, one client at a time to bound memory
		clients[i].authz.next(b)
	}
	defer func() {
		for _, c := range clients {
			c.stop()
		}
	}()
	allSynced := func() bool {
		cs := h.srv.Connections()
		if len(cs) != nClients {
			return false
		}
		for _, c := range cs {
			for _, ts := range c.Types {
				if ts.Sync != SyncSynced {
					return false
				}
			}
		}
		return true
	}
	eventually(b, "all clients ACKed", allSynced)

	var lat []time.Duration
	var setTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := workloadName(i % benchWorkloads)
		state[name] = workloadAddr(i%benchWorkloads, "rev"+string(rune('a'+i%26))+time.Now().Format("150405.000000"))
		start := time.Now()
		if err := h.srv.SetResources(pkgxds.AddressType, state); err != nil {
			b.Fatal(err)
		}
		setTime += time.Since(start)
		for _, c := range clients {
			u := c.addrs.next(b)
			if len(u.upserts) != 1 {
				b.Fatalf("client got %d upserts, want 1", len(u.upserts))
			}
			lat = append(lat, u.at.Sub(start))
		}
		// Let the ACKs finish before the next change, as the debouncer
		// spaces changes in production (with LinearCache each ACK rescanned
		// the whole set; deltaCache only looks at the change log).
		b.StopTimer()
		eventually(b, "all clients ACKed", allSynced)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(float64(setTime.Microseconds())/1000/float64(b.N), "setresources-ms")
}

// BenchmarkDiff: proto.Equal diff of the 11,000-resource Address set with
// fresh equal copies and one change (the model rebuild case).
func BenchmarkDiff(b *testing.B) {
	cur := addresses(benchWorkloads, benchServices)
	next := addresses(benchWorkloads, benchServices)
	next[workloadName(5)] = workloadAddr(5, "b")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if up, _ := diff(cur, next); len(up) != 1 {
			b.Fatalf("diff found %d changes", len(up))
		}
	}
}
