package checks

import (
	"bytes"
	"flag"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/ambient-mesh/ambient/ctl/internal/kernel"
	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestKubeVersion(t *testing.T) {
	tests := []struct {
		major, minor string
		want         Status
	}{
		{"1", "37", OK}, {"1", "30", OK}, {"1", "29", Fail}, {"1", "31+", OK}, {"2", "0", OK}, {"x", "y", Warn},
	}
	for _, tt := range tests {
		if got := KubeVersion(&version.Info{Major: tt.major, Minor: tt.minor}); got.Status != tt.want {
			t.Errorf("%s.%s: %v, want %s", tt.major, tt.minor, got, tt.want)
		}
	}
}

func node(name string, ready bool) corev1.Node {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: s}}}}
}

func TestNodes(t *testing.T) {
	tests := []struct {
		nodes []corev1.Node
		want  Status
	}{
		{nil, Fail},
		{[]corev1.Node{node("a", false)}, Fail},
		{[]corev1.Node{node("a", true), node("b", false)}, Warn},
		{[]corev1.Node{node("a", true), node("b", true)}, OK},
	}
	for i, tt := range tests {
		if got := Nodes(tt.nodes); got.Status != tt.want {
			t.Errorf("%d: %v, want %s", i, got, tt.want)
		}
	}
}

func TestCRDConflicts(t *testing.T) {
	shipped := []CRD{
		{Name: "gateways.gateway.networking.k8s.io", BundleVersion: "v1.6.3", Channel: "standard"},
		{Name: "authorizationpolicies.security.istio.io"},
	}
	tests := []struct {
		name     string
		existing []CRD
		want     Status
	}{
		{"none", nil, OK},
		{"same bundle", []CRD{{Name: "gateways.gateway.networking.k8s.io", BundleVersion: "v1.6.3", Channel: "standard"}}, OK},
		{"older bundle", []CRD{{Name: "gateways.gateway.networking.k8s.io", BundleVersion: "v1.2.0", Channel: "standard"}}, Warn},
		{"experimental", []CRD{{Name: "gateways.gateway.networking.k8s.io", BundleVersion: "v1.6.3", Channel: "experimental"}}, Warn},
		{"istio", []CRD{{Name: "authorizationpolicies.security.istio.io"}}, Warn},
		{"unrelated", []CRD{{Name: "foos.example.com"}}, OK},
	}
	for _, tt := range tests {
		if got := CRDConflicts(tt.existing, shipped); got.Status != tt.want {
			t.Errorf("%s: %v, want %s", tt.name, got, tt.want)
		}
	}
}

func readyPod(node string, ready bool) corev1.Pod {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	return corev1.Pod{Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}}}
}

func TestZtunnelPerNode(t *testing.T) {
	nodes := []corev1.Node{node("n1", true), node("n2", true)}
	if got := ZtunnelPerNode(nodes, []corev1.Pod{readyPod("n1", true), readyPod("n2", true)}); got.Status != OK {
		t.Errorf("all ready: %v", got)
	}
	got := ZtunnelPerNode(nodes, []corev1.Pod{readyPod("n1", true), readyPod("n2", false)})
	if got.Status != Fail || !bytes.Contains([]byte(got.Message), []byte("no ready ztunnel on n2:")) {
		t.Errorf("n2 not ready: %v", got)
	}
}

func TestWorst(t *testing.T) {
	if w := Worst([]Result{{Status: OK}, {Status: Warn}}); w != Warn {
		t.Errorf("got %s", w)
	}
	if w := Worst([]Result{{Status: Fail}, {Status: Warn}}); w != Fail {
		t.Errorf("got %s", w)
	}
}

// TestPostGolden renders a post-install report from fixed objects.
func TestPostGolden(t *testing.T) {
	one := int32(2)
	dep := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &one}, Status: appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}}
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gone := readyPod("n2", true)
	gone.DeletionTimestamp = &now
	rs := []Result{
		KubeVersion(&version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2"}),
		Istiod(dep),
		Istiod(nil),
		ZtunnelPerNode([]corev1.Node{node("n1", true), node("n2", true)}, []corev1.Pod{readyPod("n1", true), gone}),
		RootCert(&corev1.ConfigMap{Data: map[string]string{"root-cert.pem": "x"}}),
		RootCert(nil),
	}
	var b bytes.Buffer
	if err := printer.WriteTable(&b, Rows(rs)); err != nil {
		t.Fatal(err)
	}
	p := "testdata/post.golden"
	if *update {
		_ = os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("got:\n%s\nwant:\n%s", b.Bytes(), want)
	}
}

func TestKernel(t *testing.T) {
	tcx := kernel.Features[4]
	tests := []struct {
		name   string
		nodes  []NodeKernel
		status Status
		msg    string
	}{
		{"all good", []NodeKernel{{Node: "a"}, {Node: "b"}}, OK, "eBPF (SOCKMAP, sk_assign, sk_lookup, TCX) on 2 nodes"},
		{"missing wins over unknown", []NodeKernel{{Node: "b", Unknown: "ErrImagePull"}, {Node: "a", Missing: []kernel.Feature{tcx}}}, Fail,
			"node a lacks tcx (TCX attachment (Linux 6.6+)): ztunnel cannot capture traffic there; use nodes with Linux 6.6 or newer, or keep ztunnel off them (--set ztunnel.nodeSelector...)"},
		{"unknown", []NodeKernel{{Node: "a"}, {Node: "b", Unknown: "pod ... ErrImagePull"}}, Warn,
			"could not probe the kernel: node b: pod ... ErrImagePull (load the ambientctl image on the nodes, or pass --kernel-image)"},
		{"no nodes", nil, Warn, "no Linux node to probe"},
	}
	for _, tt := range tests {
		r := Kernel(tt.nodes)
		if r.Check != "kernel" || r.Status != tt.status || r.Message != tt.msg {
			t.Errorf("%s: got %s %q, want %s %q", tt.name, r.Status, r.Message, tt.status, tt.msg)
		}
	}
}
