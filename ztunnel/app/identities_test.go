package app

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

func workload(uid, sa, node, ip string) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: &workloadapi.Workload{
		Uid: uid, Name: uid, Namespace: "ns", ServiceAccount: sa, Node: node,
		Addresses: [][]byte{netip.MustParseAddr(ip).AsSlice()}, TunnelProtocol: workloadapi.TunnelProtocol_HBONE,
	}}}
}

func sa(name string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: name}
}

func snapshotWith(t *testing.T, addrs ...*workloadapi.Address) *state.Snapshot {
	t.Helper()
	st := state.NewStore()
	m := map[string]*workloadapi.Address{}
	for _, a := range addrs {
		m[a.GetWorkload().GetUid()] = a
	}
	if err := st.ReplaceAddresses(m); err != nil {
		t.Fatal(err)
	}
	return st.Snapshot()
}

func names(ids []spiffe.Identity) string {
	var s []string
	for _, id := range ids {
		s = append(s, id.ServiceAccount)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// TestIdentitySweeper: an identity is forgotten only after two sweeps in a
// row without a workload on this node; workloads of other nodes do not
// count; an identity that comes back is kept.
func TestIdentitySweeper(t *testing.T) {
	a1 := workload("a1", "a", "n1", "10.0.0.1")
	a2 := workload("a2", "a", "n1", "10.0.0.2")
	b := workload("b", "b", "n1", "10.0.0.3")
	bElsewhere := workload("b-remote", "b", "n2", "10.0.1.3")
	c := workload("c", "c", "n1", "10.0.0.4")
	steps := []struct {
		name   string
		addrs  []*workloadapi.Address
		held   []spiffe.Identity
		forget string
	}{
		{"all in use", []*workloadapi.Address{a1, a2, b, c}, []spiffe.Identity{sa("a"), sa("b"), sa("c")}, ""},
		{"one of two pods of a left; b moved to another node", []*workloadapi.Address{a2, bElsewhere, c}, []spiffe.Identity{sa("a"), sa("b"), sa("c")}, ""},
		{"b still gone: forgotten; c left", []*workloadapi.Address{a2, bElsewhere}, []spiffe.Identity{sa("a"), sa("b"), sa("c")}, "b"},
		{"c came back in time", []*workloadapi.Address{a2, c}, []spiffe.Identity{sa("a"), sa("c")}, ""},
		{"a and c gone", nil, []spiffe.Identity{sa("a"), sa("c")}, ""},
		{"still gone: both forgotten", nil, []spiffe.Identity{sa("a"), sa("c")}, "a,c"},
		{"nothing held", nil, nil, ""},
	}
	s := &identitySweeper{node: "n1"}
	for _, st := range steps {
		got := s.sweep(snapshotWith(t, st.addrs...), st.held)
		if names(got) != st.forget {
			t.Fatalf("%s: forget [%s], want [%s]", st.name, names(got), st.forget)
		}
	}
}

func TestLocalIdentities(t *testing.T) {
	snap := snapshotWith(t, workload("a", "a", "n1", "10.0.0.1"), workload("b", "b", "n2", "10.0.1.1"))
	got := localIdentities(snap, "n1")
	if len(got) != 1 || !got[sa("a")] {
		t.Fatalf("localIdentities = %v, want only a", got)
	}
}
