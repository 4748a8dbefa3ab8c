package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextfake "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

// cluster is a fake cluster: clientsets, pods/proxy responses, Helm storage.
type cluster struct {
	kube    *fake.Clientset
	gw      *gwfake.Clientset
	crds    *apiextfake.Clientset
	helm    *action.Configuration
	proxied map[string][]byte // "<pod>:<port><path>" → body
	// kernelExit is the exit code of the kernel probe pod per node (absent:
	// 0); -1 leaves the pod pending.
	kernelExit map[string]int
	probes     []*corev1.Pod // kernel probe pods created
}

func newCluster(t *testing.T, gatewayAPI bool, objs ...runtime.Object) *cluster {
	c := &cluster{
		kube: fake.NewClientset(objs...),
		gw:   gwfake.NewSimpleClientset(), // NewClientset lacks field management for CRD types (kubernetes#126850)
		crds: apiextfake.NewClientset(),
		helm: &action.Configuration{
			Releases:     storage.Init(driver.NewMemory()),
			KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
			Capabilities: chartutil.DefaultCapabilities,
			Log:          t.Logf,
		},
		proxied:    map[string][]byte{},
		kernelExit: map[string]int{},
	}
	// The fake "kubelet" of the kernel probe pods.
	c.kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Labels["app"] != kernelProbeLabel {
			return false, nil, nil
		}
		c.probes = append(c.probes, p.DeepCopy())
		switch code := c.kernelExit[p.Spec.NodeName]; code {
		case -1:
			p.Status.Phase = corev1.PodPending
		case 0:
			p.Status.Phase = corev1.PodSucceeded
		default:
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "check", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: int32(code)}}}}
		}
		return false, nil, nil
	})
	d := c.kube.Discovery().(*fakediscovery.FakeDiscovery)
	d.FakedServerVersion = &version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2"}
	if gatewayAPI {
		d.Resources = []*metav1.APIResourceList{{GroupVersion: "gateway.networking.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "gateways", Kind: "Gateway", Namespaced: true}}}}
	}
	c.kube.PrependProxyReactor("pods", func(a k8stesting.Action) (bool, restclient.ResponseWrapper, error) {
		pa := a.(k8stesting.ProxyGetAction)
		body, ok := c.proxied[pa.GetName()+":"+pa.GetPort()+pa.GetPath()]
		if !ok {
			return true, response{err: io.ErrUnexpectedEOF}, nil
		}
		return true, response{body: body}, nil
	})
	return c
}

type response struct {
	body []byte
	err  error
}

func (r response) DoRaw(context.Context) ([]byte, error) { return r.body, r.err }
func (r response) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(r.body)), r.err
}

// run runs ambientctl against the fake cluster.
func (c *cluster) run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{
		Out: &out, Err: &errOut,
		Clients:          func() (*Clients, error) { return &Clients{Kube: c.kube, Gateway: c.gw, CRDs: c.crds}, nil },
		DefaultNamespace: func() (string, error) { return "default", nil },
		Helm:             func(string) (*action.Configuration, error) { return c.helm, nil },
		Now:              func() time.Time { return time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC) },
		Poll:             time.Millisecond,
	}
	cmd := NewRoot(env, &out, &errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func ns(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func pod(namespace, name, node string, labels map[string]string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1." + string(rune('0'+len(name)%10)),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func TestEnrollUnenroll(t *testing.T) {
	c := newCluster(t, false,
		ns("shop", map[string]string{"team": "a"}),
		pod("shop", "web", "node1", nil),
		pod("shop", "legacy", "node1", map[string]string{dataplaneLabel: noneMode}),
		pod("shop", "agent", "node2", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		pod("shop", "job", "node2", nil, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("other", "x", "node1", nil),
	)
	out, errOut, err := c.run(t, "dataplane", "enroll", "shop")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "enroll", errOut+out)
	n, _ := c.kube.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if n.Labels[dataplaneLabel] != ambientMode || n.Labels["team"] != "a" {
		t.Errorf("labels after enroll = %v", n.Labels)
	}
	out, _, err = c.run(t, "dataplane", "enroll", "shop", "-o", "json")
	if err != nil || !strings.Contains(out, `"capturedPods": [`) {
		t.Errorf("enroll -o json: %q, %v", out, err)
	}
	if _, _, err := c.run(t, "dataplane", "unenroll", "shop"); err != nil {
		t.Fatal(err)
	}
	n, _ = c.kube.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if _, ok := n.Labels[dataplaneLabel]; ok || n.Labels["team"] != "a" {
		t.Errorf("labels after unenroll = %v", n.Labels)
	}
}

func TestEnrollUnknownNamespace(t *testing.T) {
	c := newCluster(t, false)
	for _, verb := range []string{"enroll", "unenroll"} {
		_, _, err := c.run(t, "dataplane", verb, "x")
		if err == nil || err.Error() != `namespace "x" not found: create it first (kubectl create namespace x)` {
			t.Errorf("%s: err = %v", verb, err)
		}
	}
	if _, _, err := c.run(t, "dataplane", "enroll"); err == nil {
		t.Error("enroll without a namespace accepted")
	}
}

func TestMainMissingKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	var out, errOut bytes.Buffer
	if code := Main([]string{"dataplane", "enroll", "x"}, &out, &errOut); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if got := errOut.String(); got != "Error: no kubeconfig: set KUBECONFIG or pass --kubeconfig\n" {
		t.Errorf("stderr = %q", got)
	}
}

func getGateway(t *testing.T, c *cluster, ns, name string) *gwv1.Gateway {
	t.Helper()
	g, err := c.gw.GatewayV1().Gateways(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestWaypointLifecycle(t *testing.T) {
	c := newCluster(t, true, ns("default", nil), ns("apps", nil))
	out, _, err := c.run(t, "waypoint", "apply", "-n", "apps", "--enroll-namespace")
	if err != nil {
		t.Fatal(err)
	}
	g := getGateway(t, c, "apps", "waypoint")
	if g.Spec.GatewayClassName != "istio-waypoint" || len(g.Spec.Listeners) != 1 || g.Spec.Listeners[0].Port != 15008 ||
		g.Spec.Listeners[0].Protocol != "HBONE" || g.Spec.Listeners[0].Name != "mesh" || g.Labels["istio.io/waypoint-for"] != "service" {
		t.Errorf("gateway = %+v", g)
	}
	n, _ := c.kube.CoreV1().Namespaces().Get(context.Background(), "apps", metav1.GetOptions{})
	if n.Labels["istio.io/use-waypoint"] != "waypoint" {
		t.Errorf("namespace labels = %v", n.Labels)
	}
	// Applying again with another --for updates the Gateway.
	out2, _, err := c.run(t, "waypoint", "apply", "-n", "apps", "--for", "all")
	if err != nil {
		t.Fatal(err)
	}
	if got := getGateway(t, c, "apps", "waypoint").Labels["istio.io/waypoint-for"]; got != "all" {
		t.Errorf("waypoint-for after update = %q", got)
	}
	if _, _, err := c.run(t, "waypoint", "apply", "--name", "wp2", "--for", "workload"); err != nil {
		t.Fatal(err)
	}
	// A Gateway of another class is neither listed nor deleted.
	other := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "ingress", Namespace: "apps"}, Spec: gwv1.GatewaySpec{GatewayClassName: "istio"}}
	if _, err := c.gw.GatewayV1().Gateways("apps").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, _, err := c.run(t, "waypoint", "list", "-A")
	if err != nil {
		t.Fatal(err)
	}
	status, _, err := c.run(t, "waypoint", "status", "-n", "apps")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "waypoint", out+out2+list+status)
	listJSON, _, err := c.run(t, "waypoint", "list", "-A", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "waypoint-list.json", listJSON)

	if _, _, err := c.run(t, "waypoint", "delete", "-n", "apps", "ingress"); err == nil || !strings.Contains(err.Error(), "is not a waypoint") {
		t.Errorf("deleting a non-waypoint: %v", err)
	}
	if _, _, err := c.run(t, "waypoint", "delete", "-n", "apps", "nope"); err == nil || err.Error() != `waypoint "nope" not found in namespace apps: see `+"`ambientctl waypoint list -A`" {
		t.Errorf("deleting a missing waypoint: %v", err)
	}
	if _, _, err := c.run(t, "waypoint", "delete", "-n", "apps", "--all"); err != nil {
		t.Fatal(err)
	}
	l, _ := c.gw.GatewayV1().Gateways("apps").List(context.Background(), metav1.ListOptions{})
	if len(l.Items) != 1 || l.Items[0].Name != "ingress" {
		t.Errorf("after delete --all: %v", l.Items)
	}
	if _, _, err := c.run(t, "waypoint", "apply"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.run(t, "waypoint", "delete"); err != nil {
		t.Fatalf("delete default waypoint in default namespace: %v", err)
	}
	if _, err := c.gw.GatewayV1().Gateways("default").Get(context.Background(), "wp2", metav1.GetOptions{}); err != nil {
		t.Errorf("wp2 deleted by `delete` without a name: %v", err)
	}
	if _, err := c.gw.GatewayV1().Gateways("default").Get(context.Background(), "waypoint", metav1.GetOptions{}); err == nil {
		t.Error("`delete` without a name left the default waypoint")
	}
}

func TestWaypointErrors(t *testing.T) {
	c := newCluster(t, false, ns("default", nil))
	for _, args := range [][]string{{"waypoint", "apply"}, {"waypoint", "list"}, {"waypoint", "status"}, {"waypoint", "delete", "--all"}} {
		_, _, err := c.run(t, args...)
		if err == nil || err.Error() != "Gateway API CRDs are not installed: run `ambientctl install` first" {
			t.Errorf("%v without CRDs: %v", args, err)
		}
	}
	c = newCluster(t, true, ns("default", nil))
	if _, _, err := c.run(t, "waypoint", "apply", "--for", "pods"); err == nil || !strings.Contains(err.Error(), `invalid --for "pods"`) {
		t.Errorf("bad --for: %v", err)
	}
	if _, _, err := c.run(t, "waypoint", "apply", "-n", "ghost"); err == nil || !strings.Contains(err.Error(), `namespace "ghost" not found`) {
		t.Errorf("missing namespace: %v", err)
	}
	if _, _, err := c.run(t, "waypoint", "status"); err == nil || !strings.Contains(err.Error(), `waypoint "waypoint" not found`) {
		t.Errorf("status of a missing waypoint: %v", err)
	}
}

func TestWaypointWait(t *testing.T) {
	c := newCluster(t, true, ns("default", nil))
	// The fake "controller": mark every created Gateway Programmed.
	c.gw.PrependReactor("create", "gateways", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.CreateAction).GetObject().(*gwv1.Gateway)
		g.Status.Conditions = []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue}}
		return false, nil, nil
	})
	out, _, err := c.run(t, "waypoint", "apply", "--wait")
	if err != nil || !strings.Contains(out, "✔ waypoint default/waypoint programmed") {
		t.Errorf("apply --wait: %q, %v", out, err)
	}
	c = newCluster(t, true, ns("default", nil))
	_, _, err = c.run(t, "waypoint", "apply", "--wait", "--timeout", "0s")
	if err == nil || !strings.Contains(err.Error(), "not programmed after 0s") {
		t.Errorf("apply --wait never programmed: %v", err)
	}
}

func ztunnels() []runtime.Object {
	return []runtime.Object{
		pod("istio-system", "ztunnel-a", "node1", map[string]string{"app": "ztunnel"}),
		pod("istio-system", "ztunnel-b", "node2", map[string]string{"app": "ztunnel"}),
	}
}

func TestZtunnelConfig(t *testing.T) {
	c := newCluster(t, false, ztunnels()...)
	dumpJSON, err := os.ReadFile("../dump/testdata/config_dump.json")
	if err != nil {
		t.Fatal(err)
	}
	c.proxied["ztunnel-a:15000/config_dump"] = dumpJSON
	var all strings.Builder
	for _, s := range []string{"workloads", "services", "policies", "certificates", "connections"} {
		out, _, err := c.run(t, "ztunnel-config", s, "--node", "node1")
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		all.WriteString(out)
	}
	golden(t, "ztunnel-config", all.String())
	out, _, err := c.run(t, "ztunnel-config", "policies", "--node", "node1", "-o", "json")
	if err != nil || !strings.Contains(out, `"rules": []`) {
		t.Errorf("-o json does not pass the raw section through: %q, %v", out, err)
	}
	// Without --node: the first node's ztunnel, with a note on stderr.
	out, errOut, err := c.run(t, "ztunnel-config", "workloads")
	if err != nil || errOut != "note: showing ztunnel ztunnel-a on node node1 (ztunnel runs on node1, node2; choose with --node)\n" {
		t.Errorf("no --node: err %v, stderr %q", err, errOut)
	}
	if want, _, _ := c.run(t, "ztunnel-config", "workloads", "--node", "node1"); out != want {
		t.Errorf("no --node printed\n%s\nwant the node1 table\n%s", out, want)
	}
	// By pod name.
	if _, _, err := c.run(t, "ztunnel-config", "workloads", "ztunnel-b"); err == nil || !strings.Contains(err.Error(), "ztunnel-b port 15000") {
		t.Errorf("pod argument did not pick ztunnel-b: %v", err)
	}
	if _, _, err := c.run(t, "ztunnel-config", "workloads", "ztunnel-z"); err == nil || !strings.Contains(err.Error(), `no ztunnel pod "ztunnel-z"`) {
		t.Errorf("unknown pod: %v", err)
	}
	if _, _, err := c.run(t, "ztunnel-config", "workloads", "--node", "node9"); err == nil || !strings.Contains(err.Error(), `no ztunnel pod on node "node9"`) {
		t.Errorf("unknown node: %v", err)
	}
	if _, _, err := c.run(t, "ztunnel-config", "workloads", "--node", "node2"); err == nil || !strings.Contains(err.Error(), "pods/proxy") {
		t.Errorf("unreachable admin port: %v", err)
	}
}

func TestPickZtunnel(t *testing.T) {
	mk := func(name, node string, phase corev1.PodPhase) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
	}
	pods := []corev1.Pod{mk("z-c", "node3", corev1.PodRunning), mk("z-a", "node1", corev1.PodPending), mk("z-b", "node2", corev1.PodRunning)}
	tests := []struct {
		name, node, pod string
		want, note, err string
	}{
		{name: "default skips a pending first node", want: "z-b", note: "showing ztunnel z-b on node node2 (ztunnel runs on node1, node2, node3; choose with --node)"},
		{name: "node", node: "node1", want: "z-a"},
		{name: "pod", pod: "z-c", want: "z-c"},
		{name: "pod on another node", pod: "z-c", node: "node1", err: `no ztunnel pod "z-c"`},
		{name: "unknown node", node: "node9", err: `no ztunnel pod on node "node9": ztunnel runs on node1, node2, node3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, note, err := pickZtunnel(pods, tc.node, tc.pod)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || p.Name != tc.want || note != tc.note {
				t.Errorf("got %v %q %v, want %s %q", p.Name, note, err, tc.want, tc.note)
			}
		})
	}
	if p, note, err := pickZtunnel(pods[:1], "", ""); err != nil || p.Name != "z-c" || note != "" {
		t.Errorf("single pod: %v %q %v", p, note, err)
	}
	if _, _, err := pickZtunnel(nil, "", ""); err == nil || !strings.Contains(err.Error(), "run `ambientctl install`") {
		t.Errorf("no pods: %v", err)
	}
}

func TestProxyStatus(t *testing.T) {
	objs := append(ztunnels(),
		pod("istio-system", "istiod-lite-1", "node1", map[string]string{"app": "istiod-lite"}),
		pod("default", "waypoint-x", "node2", map[string]string{"gateway.istio.io/managed": "istio.io-mesh-controller"}))
	c := newCluster(t, false, objs...)
	conns, err := os.ReadFile("../dump/testdata/connections.json")
	if err != nil {
		t.Fatal(err)
	}
	c.proxied["istiod-lite-1:15014/debug/connections"] = conns
	out, errOut, err := c.run(t, "proxy-status")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "proxy-status", errOut+out)
}

func TestCheck(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	c := newCluster(t, false, node)
	c.crds = apiextfake.NewClientset(&apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{
		Name: "gateways.gateway.networking.k8s.io", Annotations: map[string]string{"gateway.networking.k8s.io/bundle-version": "v1.1.0", "gateway.networking.k8s.io/channel": "standard"}}})
	pre, _, err := c.run(t, "check")
	if err != nil {
		t.Fatalf("pre-install check failed: %v\n%s", err, pre)
	}
	// Installed but unhealthy: post checks run by themselves and fail.
	two := int32(2)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite", Namespace: "istio-system"}, Spec: appsv1.DeploymentSpec{Replicas: &two},
		Status: appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}
	c = newCluster(t, false, node, dep)
	post, _, err := c.run(t, "check")
	if err == nil || err.Error() != "some checks failed: see the messages above" {
		t.Errorf("post check: err = %v", err)
	}
	golden(t, "check", pre+post)
	js, _, _ := c.run(t, "check", "-o", "json")
	golden(t, "check.json", js)
	if _, _, err := c.run(t, "check", "--pre", "--post"); err == nil {
		t.Error("--pre --post accepted")
	}
}

func TestVersion(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite", Namespace: "istio-system"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Image: "reg:5000/ambient/istiod-lite:v0.3.1"}}}}}}
	c := newCluster(t, false, dep)
	out, _, err := c.run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "version", out)
	tests := map[string]string{"a/b:v1": "v1", "reg:5000/a/b": "", "a/b:v2@sha256:00": "v2", "b": ""}
	for in, want := range tests {
		if got := imageTag(in); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInstall runs install twice (install, then upgrade) against Helm's
// in-memory storage and a fake cluster whose rollouts are already done.
func TestInstall(t *testing.T) {
	one := int32(2)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite", Namespace: "istio-system"}, Spec: appsv1.DeploymentSpec{Replicas: &one},
		Status: appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel", Namespace: "istio-system"},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 2}}
	c := newCluster(t, false, dep, ds)
	out1, _, err := c.run(t, "install", "--set", "global.tag=v1")
	if err != nil {
		t.Fatal(err)
	}
	out2, _, err := c.run(t, "install", "--set", "global.tag=v1")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "install", out1+out2)
	rel, err := c.helm.Releases.Deployed("istiod-lite")
	if err != nil || rel.Version != 2 || !strings.Contains(rel.Manifest, "ambient/istiod-lite:v1") {
		t.Errorf("istiod-lite release: %v, %v", rel, err)
	}
	if _, _, err := c.run(t, "install", "--set", "pilot.x=1"); err == nil || !strings.Contains(err.Error(), `unknown values key "pilot"`) {
		t.Errorf("unknown values key: %v", err)
	}
	out, _, err := c.run(t, "uninstall")
	if err != nil || !strings.Contains(out, "✔ ambient mesh removed") {
		t.Errorf("uninstall: %q, %v", out, err)
	}
	out, _, err = c.run(t, "install", "--dry-run")
	if err != nil || !strings.Contains(out, "kind: DaemonSet") || !strings.Contains(out, "kind: CustomResourceDefinition") {
		t.Errorf("install --dry-run: %v", err)
	}
}

func TestOutputFlag(t *testing.T) {
	c := newCluster(t, false)
	if _, _, err := c.run(t, "version", "--client", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "use -o table|json|yaml") {
		t.Errorf("-o xml: %v", err)
	}
}

// TestHelp: every command has a short description, and every runnable one examples.
func TestHelp(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%q has no Short", c.CommandPath())
		}
		if c.Runnable() && c.Example == "" && c.Name() != "help" && !strings.HasPrefix(c.CommandPath(), "ambientctl completion") {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root := NewRoot(&Env{}, io.Discard, io.Discard)
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	walk(root)
}

func readyNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

// TestKernelCheck: a probe pod per Linux node in kube-system with ambientctl's
// image; a node lacking TCX fails check and stops install before anything is
// installed; a probe that never runs is a warning; the pods are deleted.
func TestKernelCheck(t *testing.T) {
	win := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win", Labels: map[string]string{"kubernetes.io/os": "windows"}}}
	c := newCluster(t, false, readyNode("node1"), readyNode("node2"), win)
	out, _, err := c.run(t, "check", "--pre", "-o", "json")
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"message": "eBPF (SOCKMAP, sk_assign, sk_lookup, TCX) on 2 nodes"`) {
		t.Errorf("check output:\n%s", out)
	}
	var nodes []string
	for _, p := range c.probes {
		nodes = append(nodes, p.Spec.NodeName)
		if p.Namespace != "kube-system" || p.Spec.Containers[0].Image != "ambient/ambientctl:dev" || p.Spec.Containers[0].Args[0] != "node-check" ||
			!p.Spec.HostNetwork || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("probe pod %+v", p)
		}
	}
	if strings.Join(nodes, ",") != "node1,node2" {
		t.Errorf("probe pods on %v, want node1,node2 (not the Windows node)", nodes)
	}
	if l, _ := c.kube.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("%d probe pods left behind", len(l.Items))
	}

	c.kernelExit["node2"] = 64 + 16 // no TCX
	out, _, err = c.run(t, "check", "--pre")
	if err == nil || !strings.Contains(out, "node node2 lacks tcx (TCX attachment (Linux 6.6+)): ztunnel cannot capture traffic there") {
		t.Errorf("check with a kernel without TCX: %v\n%s", err, out)
	}
	_, _, err = c.run(t, "install")
	if err == nil || !strings.HasPrefix(err.Error(), "node node2 lacks tcx") || !strings.HasSuffix(err.Error(), "nothing was installed (--skip-kernel-check to install anyway)") || strings.Contains(err.Error(), "\n") {
		t.Errorf("install on a kernel without TCX: %v", err)
	}
	if rels, _ := c.helm.Releases.ListDeployed(); len(rels) != 0 {
		t.Errorf("install refused but %d releases exist", len(rels))
	}

	c.kernelExit["node2"] = -1 // never runs
	out, _, err = c.run(t, "check", "--pre", "--kernel-timeout", "0s")
	if err != nil || !strings.Contains(out, "could not probe the kernel: node node2") {
		t.Errorf("probe that never ran: %v\n%s", err, out)
	}
	c.kernelExit["node2"] = 137 // killed: not a probe answer
	if out, _, _ := c.run(t, "check", "--pre"); !strings.Contains(out, "node node2: the probe exited 137") {
		t.Errorf("killed probe:\n%s", out)
	}
	n := len(c.probes)
	if _, _, err := c.run(t, "check", "--pre", "--kernel=false"); err != nil || len(c.probes) != n {
		t.Errorf("--kernel=false still probed (%d pods) or failed: %v", len(c.probes)-n, err)
	}
}
