package charts

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml")

// TestLint runs `helm lint` (the SDK's rules) on every chart.
func TestLint(t *testing.T) {
	for _, name := range All {
		t.Run(name, func(t *testing.T) {
			l := lint.All(name, nil, "istio-system", false)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("%s", m)
				} else {
					t.Logf("%s", m)
				}
			}
		})
	}
}

// render renders a chart like `helm template -n istio-system` (ClientOnly dry run).
func render(t *testing.T, name string, vals map[string]any) (string, error) {
	t.Helper()
	c, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = name
	inst.Namespace = "istio-system"
	inst.IncludeCRDs = false
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := inst.Run(c, vals)
	if err != nil {
		return "", err
	}
	// CRDs are not templates; list them so the golden file shows what base ships.
	var crds []string
	for _, crd := range c.CRDObjects() {
		crds = append(crds, "# crd: "+crd.Filename+"\n")
	}
	sort.Strings(crds)
	return strings.Join(crds, "") + rel.Manifest, nil
}

func TestGolden(t *testing.T) {
	for _, name := range All {
		t.Run(name, func(t *testing.T) {
			got, err := render(t, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./charts -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendered chart; run go test ./charts -update and review the diff", golden)
			}
		})
	}
}

// TestBaseCRDs checks the generated CRDs are there: the ones the mesh reads.
func TestBaseCRDs(t *testing.T) {
	c, err := Load(Base)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, crd := range c.CRDObjects() {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal(crd.File.Data, &obj); err != nil {
			t.Fatalf("%s: %v", crd.Filename, err)
		}
		if obj.Kind != "CustomResourceDefinition" {
			t.Errorf("%s: kind %q in crds/", crd.Filename, obj.Kind)
		}
		got[obj.Metadata.Name] = true
	}
	for _, want := range []string{
		"authorizationpolicies.security.istio.io",
		"peerauthentications.security.istio.io",
		"gateways.gateway.networking.k8s.io",
		"gatewayclasses.gateway.networking.k8s.io",
		"httproutes.gateway.networking.k8s.io",
		"grpcroutes.gateway.networking.k8s.io",
		"referencegrants.gateway.networking.k8s.io",
	} {
		if !got[want] {
			t.Errorf("base chart lacks CRD %s (run go generate ./charts)", want)
		}
	}
	if got["virtualservices.networking.istio.io"] {
		t.Error("base chart ships Istio networking CRDs; only the security ones are wanted")
	}
}

// objects parses a rendered manifest into kind/name → object.
func objects(t *testing.T, manifest string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = o
	}
	return out
}

func keys(m map[string]map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func TestValues(t *testing.T) {
	tests := []struct {
		chart   string
		vals    string
		want    []string // substrings of the manifest
		wantErr string
	}{
		{chart: IstiodLite, vals: "global: {hub: reg.io/x, tag: v1}", want: []string{`image: "reg.io/x/istiod-lite:v1"`, `value: "reg.io/x/waypoint:v1"`}},
		{chart: IstiodLite, vals: "replicaCount: 3\nlogLevel: debug", want: []string{"replicas: 3", "--log-level=debug"}},
		{chart: IstiodLite, vals: "caSource: cacerts", want: []string{"--ca-source=cacerts", "secretName: cacerts"}},
		{chart: IstiodLite, vals: "caSource: vault", wantErr: "caSource must be selfsigned or cacerts"},
		{chart: IstiodLite, vals: "global: {trustDomain: example.org}", want: []string{"--trust-domain=example.org"}},
		{chart: Ztunnel, vals: "global: {tag: v2, logLevel: warn}", want: []string{`image: "ambient/ztunnel:v2"`, "--log-level=warn"}},
		{chart: Ztunnel, vals: "resources: {requests: {cpu: 1}}", want: []string{"cpu: 1\n"}},
		{chart: Ztunnel, vals: "xdsAddress: istiod.example:15012", want: []string{"--xds-address=istiod.example:15012", "--ca-address=istiod-lite.istio-system.svc:15012"}},
	}
	for _, tt := range tests {
		t.Run(tt.chart+" "+tt.vals, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tt.vals), &vals); err != nil {
				t.Fatal(err)
			}
			got, err := render(t, tt.chart, vals)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("manifest lacks %q", w)
				}
			}
		})
	}
}

// TestContract checks the objects the rest of the mesh relies on by name.
func TestContract(t *testing.T) {
	var all bytes.Buffer
	for _, name := range []string{IstiodLite, Ztunnel} {
		var vals map[string]any
		if name == IstiodLite {
			vals = map[string]any{"waypointGatewayClass": true} // off by default: istiod-lite creates it
		}
		m, err := render(t, name, vals)
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString(m)
		all.WriteString("\n---\n")
	}
	objs := objects(t, all.String())
	for _, want := range []string{
		"Deployment/istiod-lite", "Service/istiod-lite", "PodDisruptionBudget/istiod-lite",
		"ServiceAccount/istiod-lite", "GatewayClass/istio-waypoint",
		"DaemonSet/ztunnel", "ServiceAccount/ztunnel", "ClusterRole/ztunnel-istio-system",
	} {
		if objs[want] == nil {
			t.Errorf("rendered charts lack %s; have %v", want, keys(objs))
		}
	}
	gc := objs["GatewayClass/istio-waypoint"]
	if gc != nil && gc["spec"].(map[string]any)["controllerName"] != "istio.io/mesh-controller" {
		t.Errorf("istio-waypoint controllerName = %v", gc["spec"])
	}
}
