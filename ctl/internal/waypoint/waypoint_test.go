package waypoint

import (
	"bytes"
	"flag"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := "testdata/" + name + ".golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

// istioctl waypoint apply -n default --for workload --dry-run, as Istio prints it.
const istioctlOutput = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  labels:
    istio.io/waypoint-for: workload
  name: waypoint
  namespace: default
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`

func TestGatewayMatchesIstioctl(t *testing.T) {
	g := Gateway("default", "waypoint", "workload")
	b, err := yaml.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the empty creationTimestamp and status the typed object carries.
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "status")
	delete(m["metadata"].(map[string]any), "creationTimestamp")
	got, _ := yaml.Marshal(m)
	if string(got) != istioctlOutput {
		t.Errorf("got\n%s\nwant\n%s", got, istioctlOutput)
	}
}

func TestValidateFor(t *testing.T) {
	for _, f := range []string{"service", "workload", "all", "none"} {
		if err := ValidateFor(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := ValidateFor("pods"); err == nil || err.Error() != `invalid --for "pods": use one of service|workload|all|none` {
		t.Errorf("pods: %v", err)
	}
}

func TestMergeKeepsOtherLabels(t *testing.T) {
	old := Gateway("ns", "wp", "service")
	old.Labels["team"] = "a"
	old.Spec.Listeners[0].Port = 1
	got := Merge(old, Gateway("ns", "wp", "all"))
	if got.Labels["team"] != "a" || got.Labels[ForLabel] != "all" || got.Spec.Listeners[0].Port != HBONEPort {
		t.Errorf("merged = %+v", got)
	}
	if old.Labels[ForLabel] != "service" {
		t.Error("Merge modified its input")
	}
}

func fixtures() []gwv1.Gateway {
	ready := *Gateway("default", "waypoint", "service")
	ready.Generation = 2
	ready.Status.Addresses = []gwv1.GatewayStatusAddress{{Value: "10.96.0.20"}}
	ready.Status.Conditions = []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", ObservedGeneration: 2},
		{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", ObservedGeneration: 2},
	}
	ready.Status.Listeners = []gwv1.ListenerStatus{{Name: "mesh", Conditions: []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed"}}}}
	stale := *Gateway("apps", "wp-stale", "all")
	stale.Generation = 3
	stale.Status.Conditions = []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue, ObservedGeneration: 2}}
	fresh := *Gateway("apps", "new", "workload")
	delete(fresh.Labels, ForLabel)
	return []gwv1.Gateway{ready, stale, fresh}
}

func TestRowsGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		rows printer.Rows
	}{
		{"list", ListRows(fixtures())},
		{"status", StatusRows(fixtures())},
	} {
		var b bytes.Buffer
		if err := printer.WriteTable(&b, tt.rows); err != nil {
			t.Fatal(err)
		}
		golden(t, tt.name, b.Bytes())
	}
}
