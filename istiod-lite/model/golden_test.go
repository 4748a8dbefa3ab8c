package model

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*-out.yaml golden files")

// loadInput decodes multi-document Kubernetes YAML into an Input through
// the same From* converters the informers use.
func loadInput(t testing.TB, data []byte) Input {
	t.Helper()
	var in Input
	for i, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var head struct{ Kind string }
		if err := json.Unmarshal(js, &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		decode := func(v any) {
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("document %d (%s): %v", i, head.Kind, err)
			}
		}
		switch head.Kind {
		case "Namespace":
			var o corev1.Namespace
			decode(&o)
			in.Namespaces = append(in.Namespaces, FromNamespace(&o))
		case "Pod":
			var o corev1.Pod
			decode(&o)
			in.Pods = append(in.Pods, FromPod(&o))
		case "Service":
			var o corev1.Service
			decode(&o)
			in.Services = append(in.Services, FromService(&o))
		case "AuthorizationPolicy":
			var o securityv1.AuthorizationPolicy
			decode(&o)
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, FromAuthorizationPolicy(&o))
		case "PeerAuthentication":
			var o securityv1.PeerAuthentication
			decode(&o)
			in.PeerAuthentications = append(in.PeerAuthentications, FromPeerAuthentication(&o))
		case "Gateway":
			var o gatewayv1.Gateway
			decode(&o)
			in.Gateways = append(in.Gateways, FromGateway(&o))
		default:
			t.Fatalf("document %d: unsupported kind %q", i, head.Kind)
		}
	}
	return in
}

// render prints a snapshot deterministically: resources sorted by name,
// proto JSON (proto field names) with sorted keys, as YAML. Byte fields
// holding IP addresses are shown as IP strings to make review possible.
func render(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	type entry struct {
		Name     string `json:"name"`
		Resource any    `json:"resource"`
	}
	list := func(m map[string]proto.Message) []entry {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]entry, 0, len(names))
		for _, n := range names {
			js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m[n])
			if err != nil {
				t.Fatalf("marshal %s: %v", n, err)
			}
			var v any
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatalf("unmarshal %s: %v", n, err)
			}
			out = append(out, entry{Name: n, Resource: ipBytesToText(v, "")})
		}
		return out
	}
	res := s.Resources()
	doc := map[string]any{
		"addresses":      list(res[TypeAddress]),
		"authorizations": list(res[TypeAuthorization]),
		"conditions":     append([]Condition{}, s.Conditions...),
		"diagnostics":    append([]Diagnostic{}, s.Diagnostics...),
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return out
}

// ipBytesToText replaces base64 "address"/"addresses" values of 4 or 16
// bytes by the IP they encode.
func ipBytesToText(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = ipBytesToText(e, k)
		}
	case []any:
		for i, e := range x {
			x[i] = ipBytesToText(e, key)
		}
	case string:
		if key == "address" || key == "addresses" {
			if b, err := base64.StdEncoding.DecodeString(x); err == nil {
				if a, ok := netip.AddrFromSlice(b); ok {
					return a.String()
				}
			}
		}
	}
	return v
}

func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*-in.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, inPath := range ins {
		name := strings.TrimSuffix(filepath.Base(inPath), "-in.yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(inPath)
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, Build(loadInput(t, data), Config{}))
			outPath := filepath.Join("testdata", name+"-out.yaml")
			if *update {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from Build output; run go test -run TestGolden -update and review the diff\n%s", outPath, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines (enough to locate a change).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return ""
}

// TestBuildDeterministic checks that Build gives equal output on equal input.
func TestBuildDeterministic(t *testing.T) {
	data, err := os.ReadFile("testdata/authz-in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := render(t, Build(loadInput(t, data), Config{}))
	b := render(t, Build(loadInput(t, data), Config{}))
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds differ:\n%s", lineDiff(string(a), string(b)))
	}
}
