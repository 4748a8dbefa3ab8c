package waypointxds

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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

// Test input format: multi-document Kubernetes YAML holding
//   - one Gateway: the waypoint (annotation test.ambient.dev/trust-domain optional);
//   - Services: bound when labelled istio.io/use-waypoint=<waypoint> (and
//     istio.io/use-waypoint-namespace when in another namespace); endpoints in
//     the annotation test.ambient.dev/endpoints as a JSON list of
//     {"ip","node","ready","sa","ports":{"<port name>":<port>}};
//   - HTTPRoutes, GRPCRoutes, AuthorizationPolicies (security.istio.io/v1).
const (
	annEndpoints   = "test.ambient.dev/endpoints"
	annTrustDomain = "test.ambient.dev/trust-domain"
)

type testEndpoint struct {
	IP    string            `json:"ip"`
	Node  string            `json:"node"`
	Ready bool              `json:"ready"`
	SA    string            `json:"sa"`
	Ports map[string]uint32 `json:"ports"`
}

func loadInput(t testing.TB, data []byte) Input {
	t.Helper()
	in := Input{Services: map[Key]Service{}}
	var svcs []corev1.Service
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
		case "Gateway":
			var g gatewayv1.Gateway
			decode(&g)
			in.Waypoint = Waypoint{Name: g.Name, Namespace: g.Namespace, TrustDomain: g.Annotations[annTrustDomain]}
		case "Service":
			var s corev1.Service
			decode(&s)
			svcs = append(svcs, s)
		case "HTTPRoute":
			r := &gatewayv1.HTTPRoute{}
			decode(r)
			in.HTTPRoutes = append(in.HTTPRoutes, r)
		case "GRPCRoute":
			r := &gatewayv1.GRPCRoute{}
			decode(r)
			in.GRPCRoutes = append(in.GRPCRoutes, r)
		case "AuthorizationPolicy":
			p := &securityv1.AuthorizationPolicy{}
			decode(p)
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, AuthorizationPolicy{
				Name: p.Name, Namespace: p.Namespace, Generation: p.Generation, Spec: &p.Spec,
			})
		default:
			t.Fatalf("document %d: unsupported kind %q", i, head.Kind)
		}
	}
	td := in.Waypoint.TrustDomain
	if td == "" {
		td = "cluster.local"
	}
	for _, s := range svcs {
		ts := Service{Name: s.Name, Namespace: s.Namespace, Hostname: s.Name + "." + s.Namespace + ".svc.cluster.local", VIPs: s.Spec.ClusterIPs}
		if len(ts.VIPs) == 0 && s.Spec.ClusterIP != "" {
			ts.VIPs = []string{s.Spec.ClusterIP}
		}
		for _, p := range s.Spec.Ports {
			sp := ServicePort{Name: p.Name, Port: uint32(p.Port), TargetPort: uint32(p.TargetPort.IntVal)}
			if p.AppProtocol != nil {
				sp.AppProtocol = *p.AppProtocol
			}
			ts.Ports = append(ts.Ports, sp)
		}
		if a := s.Annotations[annEndpoints]; a != "" {
			var eps []testEndpoint
			if err := json.Unmarshal([]byte(a), &eps); err != nil {
				t.Fatalf("service %s/%s: %s: %v", s.Namespace, s.Name, annEndpoints, err)
			}
			for _, e := range eps {
				ts.Endpoints = append(ts.Endpoints, Endpoint{IP: e.IP, Node: e.Node, Ready: e.Ready, Ports: e.Ports,
					Identity: "spiffe://" + td + "/ns/" + s.Namespace + "/sa/" + e.SA})
			}
		}
		wpNS := s.Labels["istio.io/use-waypoint-namespace"]
		if wpNS == "" {
			wpNS = s.Namespace
		}
		if s.Labels["istio.io/use-waypoint"] == in.Waypoint.Name && wpNS == in.Waypoint.Namespace {
			in.Bound = append(in.Bound, ts)
		} else {
			in.Services[ts.Key()] = ts
		}
	}
	return in
}

// render prints the output deterministically: protojson with proto field
// names, through a map so keys are sorted, as YAML.
func render(t testing.TB, out Output, conds []Condition) []byte {
	t.Helper()
	list := func(ms []proto.Message) []any {
		res := []any{}
		for _, m := range ms {
			js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var v any
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			res = append(res, v)
		}
		return res
	}
	var ls, rs, cs, es []proto.Message
	for _, m := range out.Listeners {
		ls = append(ls, m)
	}
	for _, m := range out.Routes {
		rs = append(rs, m)
	}
	for _, m := range out.Clusters {
		cs = append(cs, m)
	}
	for _, m := range out.Endpoints {
		es = append(es, m)
	}
	type condOut struct {
		Object  string `json:"object"`
		Parent  string `json:"parent,omitempty"`
		Type    string `json:"type"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	co := []condOut{}
	for _, c := range conds {
		o := condOut{Object: c.Kind + " " + c.Namespace + "/" + c.Name, Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message}
		if c.ParentRef != nil {
			o.Parent = parentString(*c.ParentRef, c.Namespace)
		}
		co = append(co, o)
	}
	doc := map[string]any{"listeners": list(ls), "routes": list(rs), "clusters": list(cs), "endpoints": list(es), "conditions": co}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return b
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
			out, conds := Build(loadInput(t, data))
			got := render(t, out, conds)
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

// TestBuildDeterministic checks equal input gives byte-equal output, also
// when input lists are reversed.
func TestBuildDeterministic(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*-in.yaml")
	for _, p := range ins {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, ac := Build(loadInput(t, data))
		in := loadInput(t, data)
		for i, j := 0, len(in.Bound)-1; i < j; i, j = i+1, j-1 {
			in.Bound[i], in.Bound[j] = in.Bound[j], in.Bound[i]
		}
		for i, j := 0, len(in.AuthorizationPolicies)-1; i < j; i, j = i+1, j-1 {
			in.AuthorizationPolicies[i], in.AuthorizationPolicies[j] = in.AuthorizationPolicies[j], in.AuthorizationPolicies[i]
		}
		for i, j := 0, len(in.HTTPRoutes)-1; i < j; i, j = i+1, j-1 {
			in.HTTPRoutes[i], in.HTTPRoutes[j] = in.HTTPRoutes[j], in.HTTPRoutes[i]
		}
		b, bc := Build(in)
		if !bytes.Equal(render(t, a, ac), render(t, b, bc)) {
			t.Errorf("%s: output depends on input order", p)
		}
	}
}
