package model

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
)

// podEdits are the changes WithPods must track, each applied to one pod.
var podEdits = []struct {
	name string
	edit func(in *Input, i int)
}{
	{"delete", func(in *Input, i int) { in.Pods = slices.Delete(in.Pods, i, i+1) }},
	{"relabel", func(in *Input, i int) {
		p := in.Pods[i]
		p.Labels = map[string]string{"app": "relabelled", LabelDataplaneMode: DataplaneModeAmbient}
		in.Pods[i] = p
	}},
	{"opt out", func(in *Input, i int) {
		p := in.Pods[i]
		p.Labels = map[string]string{LabelDataplaneMode: DataplaneModeNone, LabelUseWaypoint: "missing"}
		in.Pods[i] = p
	}},
	{"unready", func(in *Input, i int) { in.Pods[i].Ready = !in.Pods[i].Ready }},
	{"no IP", func(in *Input, i int) { in.Pods[i].IPs = nil }},
	{"new IP", func(in *Input, i int) { in.Pods[i].IPs = []netip.Addr{netip.MustParseAddr("10.99.0.1")} }},
	{"add", func(in *Input, i int) {
		p := in.Pods[i]
		p.Name += "-copy"
		in.Pods = append(in.Pods, p)
	}},
}

// TestWithPodsEqualsBuild: for every pod of every golden input and of a
// synthetic one, and every kind of edit, WithPods on the previous Snapshot
// gives the workloads, services, policies, conditions and pod diagnostics
// that a full Build of the edited input gives.
func TestWithPodsEqualsBuild(t *testing.T) {
	inputs := map[string]Input{"synthetic": syntheticInput(2, 2, 3)}
	files, err := filepath.Glob("testdata/*-in.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("golden inputs: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = loadInput(t, data)
	}
	cfg := Config{RootNamespace: "istio-system"}
	for name, in := range inputs {
		prev := Build(in, cfg)
		for i := range in.Pods {
			for _, e := range podEdits {
				t.Run(fmt.Sprintf("%s/%s/%s", name, in.Pods[i].Name, e.name), func(t *testing.T) {
					edited := in
					edited.Pods = slices.Clone(in.Pods)
					key := in.Pods[i].Namespace + "/" + in.Pods[i].Name
					e.edit(&edited, i)
					changed := map[string]bool{key: true}
					if e.name == "add" {
						changed = map[string]bool{key + "-copy": true}
					}
					got, want := prev.WithPods(edited.Pods, changed), Build(edited, cfg)
					compareSnapshots(t, got, want)
					// The snapshot it was derived from is untouched.
					compareSnapshots(t, prev, Build(in, cfg))
				})
			}
		}
	}
}

func compareSnapshots(t *testing.T, got, want *Snapshot) {
	t.Helper()
	if len(got.Workloads) != len(want.Workloads) {
		t.Fatalf("%d workloads, want %d", len(got.Workloads), len(want.Workloads))
	}
	for k, w := range want.Workloads {
		if !proto.Equal(got.Workloads[k], w) {
			t.Errorf("workload %s:\n got %v\nwant %v", k, got.Workloads[k], w)
		}
	}
	if len(got.Policies) != len(want.Policies) || len(got.Services) != len(want.Services) {
		t.Errorf("%d policies, %d services; want %d, %d", len(got.Policies), len(got.Services), len(want.Policies), len(want.Services))
	}
	for k, p := range want.Policies {
		if !proto.Equal(got.Policies[k], p) {
			t.Errorf("policy %s differs", k)
		}
	}
	for k, s := range want.Services {
		if !proto.Equal(got.Services[k], s) {
			t.Errorf("service %s differs", k)
		}
	}
	if !reflect.DeepEqual(got.Conditions, want.Conditions) {
		t.Errorf("conditions %v, want %v", got.Conditions, want.Conditions)
	}
	podDiags := func(ds []Diagnostic) []Diagnostic {
		var out []Diagnostic
		for _, d := range ds {
			if d.Object.Kind == "Pod" {
				out = append(out, d)
			}
		}
		return out
	}
	if g, w := podDiags(got.Diagnostics), podDiags(want.Diagnostics); !reflect.DeepEqual(g, w) {
		t.Errorf("pod diagnostics %v, want %v", g, w)
	}
}
