package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func addrs(kv ...any) map[string]*workloadapi.Address {
	m := map[string]*workloadapi.Address{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(*workloadapi.Address)
	}
	return m
}

func mustApply(t *testing.T, s *Store, up map[string]*workloadapi.Address, rm ...string) *Snapshot {
	t.Helper()
	if err := s.ApplyAddresses(up, rm); err != nil {
		t.Fatalf("ApplyAddresses: %v", err)
	}
	return s.Snapshot()
}

func TestLookups(t *testing.T) {
	s := NewStore()
	length := uint32(16)
	ranged := svc("ns", "ranged", "").GetService()
	ranged.Addresses = []*workloadapi.NetworkAddress{{Address: ip("10.50.0.0"), Length: &length}}
	snap := mustApply(t, s, addrs(
		"b", wl("b", "ns", "10.0.0.2", inSvc("ns/echo", 80, 9090)),
		"a", wl("a", "ns", "10.0.0.1", inSvc("ns/echo")),
		"c", wl("c", "ns", "10.0.0.3"),
		"ns/echo", svc("ns", "echo", "10.96.0.1"),
		"ns/ranged", &workloadapi.Address{Type: &workloadapi.Address_Service{Service: ranged}},
	))
	if w := snap.WorkloadByIP(netip.MustParseAddr("10.0.0.2")); w == nil || w.UID != "b" {
		t.Errorf("WorkloadByIP(10.0.0.2) = %v, want b", w)
	}
	if w := snap.WorkloadByIP(netip.MustParseAddr("::ffff:10.0.0.2")); w == nil || w.UID != "b" {
		t.Errorf("WorkloadByIP(v4-mapped) = %v, want b", w)
	}
	if w := snap.WorkloadByNetworkIP("other", netip.MustParseAddr("10.0.0.2")); w != nil {
		t.Errorf("WorkloadByNetworkIP(other) = %v, want nil", w.UID)
	}
	if w := snap.WorkloadByUID("c"); w == nil || w.UID != "c" {
		t.Errorf("WorkloadByUID(c) = %v", w)
	}
	echo := snap.ServiceByVIP(netip.MustParseAddr("10.96.0.1"))
	if echo == nil || echo.Key != "ns/echo" || snap.ServiceByHostname("ns", "echo") != echo || snap.ServiceByKey("ns/echo") != echo {
		t.Fatalf("service lookups disagree: %v", echo)
	}
	if got := snap.ServiceByVIP(netip.MustParseAddr("10.50.3.4")); got == nil || got.Key != "ns/ranged" {
		t.Errorf("ServiceByVIP(in CIDR) = %v, want ns/ranged", got)
	}
	if got := snap.ServiceByVIP(netip.MustParseAddr("10.51.0.1")); got != nil {
		t.Errorf("ServiceByVIP(outside) = %v, want nil", got.Key)
	}
	eps := snap.EndpointsOf(echo)
	if got := epUIDs(eps); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("EndpointsOf = %v, want [a b]", got)
	}
	if tp, ok := eps[1].TargetPort(80); !ok || tp != 9090 {
		t.Errorf("b.TargetPort(80) = %d %v, want 9090", tp, ok)
	}
	if _, ok := eps[0].TargetPort(80); ok {
		t.Errorf("a has no port mapping, TargetPort ok")
	}
	if got := uids(snap.Workloads()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Workloads = %v", got)
	}
	if n := len(snap.Services()); n != 2 {
		t.Errorf("Services = %d, want 2", n)
	}
}

func TestRejectedUpdateKeepsSnapshot(t *testing.T) {
	s := NewStore()
	before := mustApply(t, s, addrs("a", wl("a", "ns", "10.0.0.1")))
	bad := wl("bad", "ns", "")
	bad.GetWorkload().Addresses = [][]byte{{1, 2, 3, 4, 5}}
	err := s.ApplyAddresses(addrs("b", wl("b", "ns", "10.0.0.2"), "bad", bad, "nil", &workloadapi.Address{}), []string{"a"})
	if err == nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("ApplyAddresses = %v, want ErrInvalid", err)
	}
	for _, want := range []string{`workload "bad": field addresses[0]`, `address "nil": field type`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if s.Snapshot() != before {
		t.Fatalf("snapshot replaced by a rejected update")
	}
	if s.Snapshot().WorkloadByUID("b") != nil || s.Snapshot().WorkloadByUID("a") == nil {
		t.Errorf("rejected update partly applied")
	}
}

func TestIncrementalUpdates(t *testing.T) {
	s := NewStore()
	s1 := mustApply(t, s, addrs(
		"a", wl("a", "ns", "10.0.0.1", inSvc("ns/echo")),
		"b", wl("b", "ns", "10.0.0.2", inSvc("ns/echo")),
		"ns/echo", svc("ns", "echo", "10.96.0.1"),
	))
	// a moves to a new IP and leaves echo; b is removed; c joins.
	s2 := mustApply(t, s, addrs(
		"a", wl("a", "ns", "10.0.0.9"),
		"c", wl("c", "ns", "10.0.0.3", inSvc("ns/echo")),
	), "b", "unknown")
	echo := s2.ServiceByKey("ns/echo")
	if got := epUIDs(s2.EndpointsOf(echo)); !slices.Equal(got, []string{"c"}) {
		t.Errorf("endpoints after update = %v, want [c]", got)
	}
	if s2.WorkloadByIP(netip.MustParseAddr("10.0.0.1")) != nil || s2.WorkloadByIP(netip.MustParseAddr("10.0.0.2")) != nil {
		t.Errorf("stale IP index entries")
	}
	if w := s2.WorkloadByIP(netip.MustParseAddr("10.0.0.9")); w == nil || w.UID != "a" {
		t.Errorf("new IP of a not indexed")
	}
	// The old snapshot is untouched.
	if got := epUIDs(s1.EndpointsOf(s1.ServiceByKey("ns/echo"))); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("old snapshot endpoints = %v, want [a b]", got)
	}
	if w := s1.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); w == nil || w.UID != "a" {
		t.Errorf("old snapshot lost a's old IP")
	}
	if s2.Version() != s1.Version()+1 {
		t.Errorf("version %d after %d", s2.Version(), s1.Version())
	}
	// Removing the service keeps endpoints staged for when it returns.
	s3 := mustApply(t, s, nil, "ns/echo")
	if s3.ServiceByVIP(netip.MustParseAddr("10.96.0.1")) != nil || s3.ServiceByKey("ns/echo") != nil {
		t.Errorf("service still present after removal")
	}
	s4 := mustApply(t, s, addrs("ns/echo", svc("ns", "echo", "10.96.0.2")))
	if got := epUIDs(s4.EndpointsOf(s4.ServiceByVIP(netip.MustParseAddr("10.96.0.2")))); !slices.Equal(got, []string{"c"}) {
		t.Errorf("endpoints after service re-added = %v, want [c]", got)
	}
	if s4.ServiceByVIP(netip.MustParseAddr("10.96.0.1")) != nil {
		t.Errorf("old VIP still indexed")
	}
}

func TestIPReuse(t *testing.T) {
	s := NewStore()
	mustApply(t, s, addrs("old", wl("old", "ns", "10.0.0.1")))
	mustApply(t, s, addrs("new", wl("new", "ns", "10.0.0.1")))
	snap := mustApply(t, s, nil, "old")
	if w := snap.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); w == nil || w.UID != "new" {
		t.Errorf("removing the old pod dropped the new pod's IP: %v", w)
	}
}

func TestHostNetworkNotIndexedByIP(t *testing.T) {
	s := NewStore()
	snap := mustApply(t, s, addrs("h", wl("h", "ns", "192.168.1.1", func(w *workloadapi.Workload) {
		w.NetworkMode = workloadapi.NetworkMode_HOST_NETWORK
	})))
	if snap.WorkloadByIP(netip.MustParseAddr("192.168.1.1")) != nil {
		t.Errorf("host-network workload indexed by IP")
	}
	if snap.WorkloadByUID("h") == nil {
		t.Errorf("host-network workload missing")
	}
}

func TestKindChangeSameName(t *testing.T) {
	// A name first used by a service then reused... cannot happen with
	// istiod's naming, but must not leave both.
	s := NewStore()
	mustApply(t, s, addrs("ns/x", svc("ns", "x", "10.96.0.5")))
	snap := mustApply(t, s, addrs("ns/x", wl("ns/x", "ns", "10.0.0.5")))
	if snap.ServiceByKey("ns/x") != nil || snap.ServiceByVIP(netip.MustParseAddr("10.96.0.5")) != nil {
		t.Errorf("service not replaced by the workload of the same name")
	}
}

func TestReplaceAddresses(t *testing.T) {
	s := NewStore()
	mustApply(t, s, addrs("a", wl("a", "ns", "10.0.0.1"), "ns/echo", svc("ns", "echo", "10.96.0.1")))
	if err := s.ReplaceAddresses(addrs("b", wl("b", "ns", "10.0.0.2"))); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if got := uids(snap.Workloads()); !slices.Equal(got, []string{"b"}) || len(snap.Services()) != 0 {
		t.Errorf("after replace: workloads %v services %d", got, len(snap.Services()))
	}
}

func TestPoliciesFor(t *testing.T) {
	s := NewStore()
	err := s.ApplyAuthorizations(map[string]*security.Authorization{
		"istio-system/global":  pol("istio-system", "global", security.Scope_GLOBAL),
		"ns/ns-wide":           pol("ns", "ns-wide", security.Scope_NAMESPACE),
		"other/ns-wide":        pol("other", "ns-wide", security.Scope_NAMESPACE),
		"ns/selected":          pol("ns", "selected", security.Scope_WORKLOAD_SELECTOR),
		"ns/not-selected":      pol("ns", "not-selected", security.Scope_WORKLOAD_SELECTOR),
		"istio-system/global2": pol("istio-system", "global2", security.Scope_GLOBAL),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, addrs("a", wl("a", "ns", "10.0.0.1", func(w *workloadapi.Workload) {
		// ns/ns-wide listed too: must not be duplicated; missing is skipped.
		w.AuthorizationPolicies = []string{"ns/selected", "ns/ns-wide", "ns/missing"}
	})))
	snap := s.Snapshot()
	names := func(ps []*security.Authorization) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	want := []string{"istio-system/global", "istio-system/global2", "ns/ns-wide", "ns/selected"}
	if got := names(snap.PoliciesFor(snap.WorkloadByUID("a"))); !slices.Equal(got, want) {
		t.Errorf("PoliciesFor = %v, want %v", got, want)
	}
	if got := len(snap.Policies()); got != 6 {
		t.Errorf("Policies = %d, want 6", got)
	}
	// Removing and rescoping update the scope indexes.
	err = s.ApplyAuthorizations(map[string]*security.Authorization{
		"istio-system/global2": pol("istio-system", "global2", security.Scope_WORKLOAD_SELECTOR),
	}, []string{"ns/ns-wide"})
	if err != nil {
		t.Fatal(err)
	}
	snap2 := s.Snapshot()
	want = []string{"istio-system/global", "ns/selected"}
	if got := names(snap2.PoliciesFor(snap2.WorkloadByUID("a"))); !slices.Equal(got, want) {
		t.Errorf("PoliciesFor after update = %v, want %v", got, want)
	}
	if got := names(snap.PoliciesFor(snap.WorkloadByUID("a"))); len(got) != 4 {
		t.Errorf("old snapshot changed: %v", got)
	}
}

func TestApplyAuthorizationsRejects(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		p       *security.Authorization
		wantErr string
	}{
		{"nil", "ns/a", nil, `authorization "ns/a": field resource: nil`},
		{"name mismatch", "a", pol("ns", "a", security.Scope_GLOBAL), `authorization "a": field namespace/name: "ns/a" differs`},
		{"missing namespace", "/a", pol("", "a", security.Scope_GLOBAL), `field namespace/name: both are required`},
		{"bad match", "ns/a", &security.Authorization{Name: "a", Namespace: "ns", Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{DestinationPorts: []uint32{70000}}}}}}}},
			`authorization "ns/a": field groups[0].rules[0].matches[0].destination_ports[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			before := s.Snapshot()
			err := s.ApplyAuthorizations(map[string]*security.Authorization{tt.key: tt.p, "ns/ok": pol("ns", "ok", security.Scope_GLOBAL)}, nil)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
			if s.Snapshot() != before {
				t.Errorf("rejected update applied")
			}
		})
	}
}

func TestReplaceAuthorizations(t *testing.T) {
	s := NewStore()
	if err := s.ApplyAuthorizations(map[string]*security.Authorization{"ns/a": pol("ns", "a", security.Scope_NAMESPACE)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceAuthorizations(map[string]*security.Authorization{"ns/b": pol("ns", "b", security.Scope_NAMESPACE)}); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	w, _ := ParseWorkload("w", wl("w", "ns", "10.0.0.1").GetWorkload())
	if ps := snap.PoliciesFor(w); len(ps) != 1 || ps[0].Name != "b" || snap.PolicyByName("ns/a") != nil {
		t.Errorf("after replace: %v", ps)
	}
}

// TestCowMapAgainstMap checks the sharded copy-on-write map against a plain
// map under random edits, and that earlier versions never change.
func TestCowMapAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newCowMap[string, int](hashString)
	ref := map[string]int{}
	type version struct {
		m   *cowMap[string, int]
		ref map[string]int
	}
	var versions []version
	for range 50 {
		e := m.edit()
		for range r.IntN(40) {
			k := fmt.Sprint(r.IntN(200))
			if r.IntN(3) == 0 {
				e.del(k)
				delete(ref, k)
			} else {
				v := r.Int()
				e.set(k, v)
				ref[k] = v
			}
		}
		m = e.done()
		snapshot := map[string]int{}
		for k, v := range ref {
			snapshot[k] = v
		}
		versions = append(versions, version{m, snapshot})
	}
	for i, v := range versions {
		if v.m.len() != len(v.ref) {
			t.Fatalf("version %d: len %d, want %d", i, v.m.len(), len(v.ref))
		}
		for k := range 200 {
			key := fmt.Sprint(k)
			got, ok := v.m.get(key)
			want, wok := v.ref[key]
			if ok != wok || got != want {
				t.Fatalf("version %d key %s: got %d,%v want %d,%v", i, key, got, ok, want, wok)
			}
		}
	}
}

func bigStore(b *testing.B, n int) *Store {
	s := NewStore()
	up := map[string]*workloadapi.Address{}
	for i := range n {
		uid := fmt.Sprintf("Kubernetes//Pod/ns%d/pod-%d", i%100, i)
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		up[uid] = wl(uid, fmt.Sprintf("ns%d", i%100), a.String(), inSvc(fmt.Sprintf("ns%d/svc%d", i%100, i%500), 80, 8080))
	}
	for i := range 500 {
		key := fmt.Sprintf("ns%d/svc%d", i%100, i)
		up[key] = svc(fmt.Sprintf("ns%d", i%100), fmt.Sprintf("svc%d", i), netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).String())
	}
	if err := s.ApplyAddresses(up, nil); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkApplyOneWorkload10k: cost of a single-pod update on a store of
// 10k workloads and 500 services (the common steady-state xDS delta).
func BenchmarkApplyOneWorkload10k(b *testing.B) {
	s := bigStore(b, 10000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		uid := "Kubernetes//Pod/ns7/pod-7"
		up := map[string]*workloadapi.Address{uid: wl(uid, "ns7", netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}).String(), inSvc("ns7/svc7", 80, 8080))}
		if err := s.ApplyAddresses(up, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyInitial10k: the initial full push of 10k workloads.
func BenchmarkApplyInitial10k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		bigStore(b, 10000)
	}
}

func BenchmarkWorkloadByIP10k(b *testing.B) {
	snap := bigStore(b, 10000).Snapshot()
	a := netip.AddrFrom4([4]byte{10, 0, 3, 7})
	b.ReportAllocs()
	for b.Loop() {
		if snap.WorkloadByIP(a) == nil {
			b.Fatal("not found")
		}
	}
}

// TestConcurrentReaders is for -race: readers use snapshots while the
// writer publishes new ones; every snapshot a reader sees is consistent
// (the workload found by IP is the one found by uid in the same snapshot).
func TestConcurrentReaders(t *testing.T) {
	s := NewStore()
	mustApply(t, s, addrs("a", wl("a", "ns", "10.0.0.1", inSvc("ns/echo")), "ns/echo", svc("ns", "echo", "10.96.0.1")))
	done := make(chan struct{})
	errs := make(chan string, 4)
	for range 2 {
		go func() {
			for {
				select {
				case <-done:
					errs <- ""
					return
				default:
				}
				snap := s.Snapshot()
				byUID := snap.WorkloadByUID("a")
				if byUID == nil {
					errs <- "workload a missing"
					return
				}
				if byIP := snap.WorkloadByIP(byUID.Addrs[0]); byIP != byUID {
					errs <- "IP index disagrees with uid index within one snapshot"
					return
				}
				if eps := snap.EndpointsOf(snap.ServiceByKey("ns/echo")); len(eps) != 1 || eps[0].Workload != byUID {
					errs <- "endpoints disagree with uid index within one snapshot"
					return
				}
			}
		}()
	}
	for i := range 200 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		mustApply(t, s, addrs("a", wl("a", "ns", a.String(), inSvc("ns/echo"))))
	}
	close(done)
	for range 2 {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}
