package install

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func helmConfig(t *testing.T) *action.Configuration {
	return &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          t.Logf,
	}
}

func TestSplitValues(t *testing.T) {
	tests := []struct {
		name    string
		sets    []string
		want    map[string]string // chart → fmt of its values
		wantErr string
	}{
		{name: "global to all", sets: []string{"global.tag=v1"}, want: map[string]string{
			"base": "map[global:map[tag:v1]]", "istiod-lite": "map[global:map[tag:v1]]", "ztunnel": "map[global:map[tag:v1]]"}},
		{name: "per chart", sets: []string{"istiodLite.replicaCount=3", "ztunnel.logLevel=debug"}, want: map[string]string{
			"base": "map[]", "istiod-lite": "map[replicaCount:3]", "ztunnel": "map[logLevel:debug]"}},
		{name: "unknown key", sets: []string{"pilot.replicas=1"}, wantErr: `unknown values key "pilot"`},
		{name: "scalar section", sets: []string{"ztunnel=1"}, wantErr: `values key "ztunnel" must be a map`},
		{name: "nested global", sets: []string{"ztunnel.global.tag=x"}, wantErr: "ztunnel.global is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := LoadValues(nil, tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			got, err := SplitValues(v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for c, w := range tt.want {
				if g := fmtMap(got[c]); g != w {
					t.Errorf("%s: %s, want %s", c, g, w)
				}
			}
		})
	}
}

func fmtMap(m map[string]any) string { return fmt.Sprint(m) }

func TestLoadValuesFileThenSet(t *testing.T) {
	f := filepath.Join(t.TempDir(), "v.yaml")
	if err := os.WriteFile(f, []byte("global:\n  tag: fromfile\n  hub: reg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := LoadValues([]string{f}, []string{"global.tag=fromset"})
	if err != nil {
		t.Fatal(err)
	}
	g := v["global"].(map[string]any)
	if g["tag"] != "fromset" || g["hub"] != "reg" {
		t.Errorf("global = %v, want tag from --set and hub from the file", g)
	}
	if _, err := LoadValues([]string{"/nonexistent.yaml"}, nil); err == nil {
		t.Error("missing values file accepted")
	}
}

// TestApplyIsIdempotent installs into Helm's in-memory storage twice: the
// second run upgrades each release instead of failing.
func TestApplyIsIdempotent(t *testing.T) {
	var out bytes.Buffer
	in := &Installer{Helm: helmConfig(t), Namespace: Namespace, Out: &out}
	vals, _ := SplitValues(map[string]any{})
	for i := 0; i < 2; i++ {
		if err := in.Apply(context.Background(), vals, time.Minute); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	for _, want := range []string{"✔ base installed (revision 1)", "✔ ztunnel installed (revision 1)", "✔ istiod-lite upgraded (revision 2)", "✔ ztunnel upgraded (revision 2)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := in.Uninstall(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := in.Uninstall(context.Background(), time.Minute); err != nil {
		t.Fatalf("second uninstall: %v", err)
	}
	for _, want := range []string{"✔ ztunnel removed", "✔ base removed", "- istiod-lite not installed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("uninstall output lacks %q:\n%s", want, out.String())
		}
	}
	// After an uninstall, install works again.
	if err := in.Apply(context.Background(), vals, time.Minute); err != nil {
		t.Fatalf("reinstall: %v", err)
	}
}

// TestApplyValuesAreThisRunsOnly: a second install without --set drops the
// first one's values (as istioctl install does), rather than Helm's reuse.
func TestApplyValuesAreThisRunsOnly(t *testing.T) {
	in := &Installer{Helm: helmConfig(t), Namespace: Namespace, Out: io.Discard}
	debug, err := SplitValues(map[string]any{"ztunnel": map[string]any{"logLevel": "debug"}})
	if err != nil {
		t.Fatal(err)
	}
	none, _ := SplitValues(map[string]any{})
	logLevel := func() any {
		rel, err := in.Helm.Releases.Last("ztunnel")
		if err != nil {
			t.Fatal(err)
		}
		return rel.Config["logLevel"]
	}
	for i, tc := range []struct {
		vals map[string]map[string]any
		want any
	}{{debug, "debug"}, {none, nil}, {debug, "debug"}} {
		if err := in.Apply(context.Background(), tc.vals, time.Minute); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if got := logLevel(); got != tc.want {
			t.Errorf("run %d: ztunnel release logLevel = %v, want %v", i+1, got, tc.want)
		}
	}
}

func TestApplyRejectsBadValues(t *testing.T) {
	in := &Installer{Helm: helmConfig(t), Namespace: Namespace, Out: io.Discard}
	vals, _ := SplitValues(map[string]any{"istiodLite": map[string]any{"caSource": "vault"}})
	err := in.Apply(context.Background(), vals, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "caSource must be selfsigned or cacerts") {
		t.Fatalf("err = %v", err)
	}
}

func TestRender(t *testing.T) {
	vals, _ := SplitValues(map[string]any{"global": map[string]any{"tag": "v9"}})
	m, err := Render(vals, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: gateways.gateway.networking.k8s.io", `image: "ambient/istiod-lite:v9"`, `image: "ambient/ztunnel:v9"`} {
		if !strings.Contains(m, want) {
			t.Errorf("rendered manifests lack %q", want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDeploymentReady(t *testing.T) {
	tests := []struct {
		name string
		d    appsv1.Deployment
		ok   bool
		msg  string
	}{
		{"ready", appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2))}, Status: appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}}, true, "2 of 2 replicas ready"},
		{"one ready", appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2))}, Status: appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}}, false, "1 of 2 replicas ready"},
		{"old generation", appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: appsv1.DeploymentStatus{ObservedGeneration: 1}}, false, "waiting for the controller to see the new spec"},
		{"updating", appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2))}, Status: appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 1}}, false, "1 of 2 replicas updated"},
		{"old terminating", appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2))}, Status: appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 2}}, false, "1 old replicas terminating"},
	}
	for _, tt := range tests {
		ok, msg := DeploymentReady(&tt.d)
		if ok != tt.ok || msg != tt.msg {
			t.Errorf("%s: (%v, %q), want (%v, %q)", tt.name, ok, msg, tt.ok, tt.msg)
		}
	}
}

func TestDaemonSetReady(t *testing.T) {
	tests := []struct {
		name string
		s    appsv1.DaemonSetStatus
		ok   bool
		msg  string
	}{
		{"ready", appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 2}, true, "2 of 2 nodes ready"},
		{"no nodes", appsv1.DaemonSetStatus{}, false, "no node to schedule on yet"},
		{"updating", appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberReady: 2}, false, "1 of 2 nodes updated"},
		{"not ready", appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3, NumberReady: 1}, false, "1 of 3 nodes ready"},
	}
	for _, tt := range tests {
		ok, msg := DaemonSetReady(&appsv1.DaemonSet{Status: tt.s})
		if ok != tt.ok || msg != tt.msg {
			t.Errorf("%s: (%v, %q), want (%v, %q)", tt.name, ok, msg, tt.ok, tt.msg)
		}
	}
}

func TestPodProblems(t *testing.T) {
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "ok"}, Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: corev1.PodSpec{NodeName: "n2"}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "capture", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pending"}, Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/2 nodes are available"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unready"}, Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}},
	}
	got := strings.Join(PodProblems(pods), "\n")
	want := strings.Join([]string{
		"pod crash (node n2): container capture CrashLoopBackOff",
		"pod pending (node unscheduled): not scheduled: 0/2 nodes are available",
		"pod unready (node n1): container proxy running but not ready (restarts 2)",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestWaitReady: already rolled out → returns at once; not ready → the error
// names the pod and what to check (a zero timeout, so no waiting).
func TestWaitReady(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite", Namespace: Namespace}, Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1))},
		Status: appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel", Namespace: Namespace},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1}}
	var out bytes.Buffer
	in := &Installer{Kube: fake.NewClientset(dep, ds), Namespace: Namespace, Out: &out}
	if err := in.WaitReady(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "istiod-lite: 1 of 1 replicas ready; ztunnel: 1 of 1 nodes ready") {
		t.Errorf("progress: %q", out.String())
	}

	bad := ds.DeepCopy()
	bad.Status.NumberReady = 0
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel-x", Namespace: Namespace, Labels: map[string]string{"app": "ztunnel"}}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}}
	in = &Installer{Kube: fake.NewClientset(dep, bad, pod), Namespace: Namespace, Out: io.Discard}
	err := in.WaitReady(context.Background(), 0)
	if err == nil || !strings.Contains(err.Error(), "pod ztunnel-x (node n1): container proxy ImagePullBackOff") || !strings.Contains(err.Error(), "kubectl -n istio-system") {
		t.Fatalf("err = %v", err)
	}
}
