package model

import (
	"reflect"
	"sort"
	"testing"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func TestDiff(t *testing.T) {
	a := func(name string, action security.Action) proto.Message {
		return &security.Authorization{Name: name, Action: action}
	}
	tests := []struct {
		name        string
		prev, next  map[string]proto.Message
		wantChanged []string
		wantRemoved []string
	}{
		{name: "both empty"},
		{name: "all new", next: map[string]proto.Message{"x": a("x", 0), "y": a("y", 0)}, wantChanged: []string{"x", "y"}},
		{name: "all removed", prev: map[string]proto.Message{"x": a("x", 0), "y": a("y", 0)}, wantRemoved: []string{"x", "y"}},
		{
			name:        "equal content, different pointers",
			prev:        map[string]proto.Message{"x": a("x", security.Action_DENY)},
			next:        map[string]proto.Message{"x": a("x", security.Action_DENY)},
			wantChanged: nil,
		},
		{
			name:        "changed, kept, added, removed",
			prev:        map[string]proto.Message{"x": a("x", 0), "k": a("k", 0), "r": a("r", 0)},
			next:        map[string]proto.Message{"x": a("x", security.Action_DENY), "k": a("k", 0), "n": a("n", 0)},
			wantChanged: []string{"n", "x"},
			wantRemoved: []string{"r"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed, removed := Diff(tt.prev, tt.next)
			var got []string
			for k, v := range changed {
				if v != tt.next[k] {
					t.Errorf("changed[%q] is not next's message", k)
				}
				got = append(got, k)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tt.wantChanged) {
				t.Errorf("changed = %v, want %v", got, tt.wantChanged)
			}
			if !reflect.DeepEqual(removed, tt.wantRemoved) {
				t.Errorf("removed = %v, want %v", removed, tt.wantRemoved)
			}
		})
	}
}

// TestDiffRebuild checks Diff on two real builds: identical inputs give no
// change; one field changed deep in one workload gives exactly that one.
func TestDiffRebuild(t *testing.T) {
	a := Build(syntheticInput(2, 2, 3), Config{}).Resources()
	b := Build(syntheticInput(2, 2, 3), Config{}).Resources()
	for typ := range a {
		if changed, removed := Diff(a[typ], b[typ]); len(changed) != 0 || len(removed) != 0 {
			t.Fatalf("%s: identical builds differ: %v %v", typ, changed, removed)
		}
	}
	uid := WorkloadUID("Kubernetes", "ns-0", "pod-1")
	w := b[TypeAddress][uid].(*workloadapi.Address).GetWorkload()
	w.Services["ns-0/svc-1.ns-0.svc.cluster.local"].Ports[0].TargetPort++
	changed, removed := Diff(a[TypeAddress], b[TypeAddress])
	if len(changed) != 1 || changed[uid] == nil || len(removed) != 0 {
		t.Fatalf("changed = %v, removed = %v; want only %s", changed, removed, uid)
	}
}
