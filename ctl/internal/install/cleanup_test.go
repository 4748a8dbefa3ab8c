package install

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// TestCleanupSpecFromChart: the cleanup pod of the chart's default
// DaemonSet runs ztunnel's capture role with --uninstall, on the node's
// network, with capture's capabilities and the bpffs hostPath.
func TestCleanupSpecFromChart(t *testing.T) {
	m, err := renderChart("ztunnel", map[string]any{"bpffs": "/sys/fs/bpf/mesh", "global": map[string]any{"tag": "v9"}}, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := DaemonSetFromManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := CleanupSpecFrom(ds)
	if err != nil {
		t.Fatal(err)
	}
	if s.Image != "ambient/ztunnel:v9" || s.BPFFS != "/sys/fs/bpf/mesh" || s.MountPath != "/sys/fs/bpf" ||
		s.BPFFSVolume.HostPath == nil || s.BPFFSVolume.HostPath.Path != "/sys/fs/bpf" {
		t.Errorf("spec = %+v", s)
	}
	p := CleanupPod(s, Namespace, "node1")
	c := p.Spec.Containers[0]
	if p.Name != "ztunnel-cleanup-node1" || p.Spec.NodeName != "node1" || !p.Spec.HostNetwork || p.Spec.RestartPolicy != corev1.RestartPolicyNever ||
		p.Labels["app"] != "ztunnel-cleanup" || p.Labels["istio.io/dataplane-mode"] != "none" {
		t.Errorf("pod = %+v", p.ObjectMeta)
	}
	if want := []string{"--role=capture", "--uninstall", "--bpffs=/sys/fs/bpf/mesh"}; !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	caps := c.SecurityContext.Capabilities.Add
	for _, want := range []corev1.Capability{"BPF", "NET_ADMIN"} {
		if !slices.Contains(caps, want) {
			t.Errorf("capabilities %v lack %s", caps, want)
		}
	}
	if c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
		t.Error("cleanup pod is privileged")
	}
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].HostPath.Path != "/sys/fs/bpf" || c.VolumeMounts[0].MountPath != "/sys/fs/bpf" {
		t.Errorf("volumes %+v mounts %+v", p.Spec.Volumes, c.VolumeMounts)
	}
	if len(p.Spec.Tolerations) != 1 || p.Spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("tolerations %+v, want the DaemonSet's (all)", p.Spec.Tolerations)
	}

	// A DaemonSet without capture, or without the bpffs hostPath, is refused.
	noCapture := ds.DeepCopy()
	noCapture.Spec.Template.Spec.Containers = noCapture.Spec.Template.Spec.Containers[1:]
	if _, err := CleanupSpecFrom(noCapture); err == nil {
		t.Error("DaemonSet without a capture container accepted")
	}
	noVol := ds.DeepCopy()
	noVol.Spec.Template.Spec.Volumes = nil
	if _, err := CleanupSpecFrom(noVol); err == nil || !strings.Contains(err.Error(), "no hostPath") {
		t.Errorf("DaemonSet without the bpffs volume: %v", err)
	}
	if _, err := DaemonSetFromManifest("kind: Service\nmetadata:\n  name: x\n"); err == nil {
		t.Error("manifest without a DaemonSet accepted")
	}
}

func TestCleanupNodes(t *testing.T) {
	node := func(name string, l map[string]string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	nodes := []corev1.Node{node("b", map[string]string{"kubernetes.io/os": "linux"}), node("win", map[string]string{"kubernetes.io/os": "windows"}), node("a", map[string]string{"kubernetes.io/os": "linux"})}
	if got := CleanupNodes(nodes, map[string]string{"kubernetes.io/os": "linux"}); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("linux nodes = %v", got)
	}
	if got := CleanupNodes(nodes, nil); len(got) != 3 {
		t.Errorf("no selector: %v", got)
	}
	if got := CleanupPodName(strings.Repeat("n", 80)); len(got) > 63 {
		t.Errorf("pod name %d long", len(got))
	}
}

func TestCleanupOutcome(t *testing.T) {
	failed := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}}
	tests := []struct {
		pod       *corev1.Pod
		done      bool
		failedWhy string
	}{
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, false, ""},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false, ""},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, true, ""},
		{failed, true, "exited 1 Error"},
	}
	for _, tt := range tests {
		done, why := CleanupOutcome(tt.pod)
		if done != tt.done || why != tt.failedWhy {
			t.Errorf("%s: got %v %q, want %v %q", tt.pod.Status.Phase, done, why, tt.done, tt.failedWhy)
		}
	}
}

// TestUninstallCleansNodes: uninstall removes the releases and istiod-lite's
// run-time objects, runs one cleanup pod per Linux node with the installed
// image, deletes those pods, and fails naming a node whose cleanup failed.
func TestUninstallCleansNodes(t *testing.T) {
	for _, failNode := range []string{"", "node2"} {
		t.Run("fail="+failNode, func(t *testing.T) {
			linux := map[string]string{"kubernetes.io/os": "linux"}
			kube := fake.NewClientset(
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}},
				&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: linux}},
				&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2", Labels: linux}},
				&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "win", Labels: map[string]string{"kubernetes.io/os": "windows"}}},
				&coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite", Namespace: Namespace}},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-secret", Namespace: Namespace}},
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: Namespace}},
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: "apps", Labels: map[string]string{"istio.io/config": "true"}}},
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "apps", Labels: map[string]string{"istio.io/config": "true"}}},
			)
			gw := gwfake.NewSimpleClientset(&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "istio-waypoint"}, Spec: gwv1.GatewayClassSpec{ControllerName: "istio.io/mesh-controller"}})
			var created []*corev1.Pod
			// The fake "kubelet": a cleanup pod finishes as soon as it is created.
			kube.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
				created = append(created, p.DeepCopy())
				p.Status.Phase = corev1.PodSucceeded
				if p.Spec.NodeName == failNode {
					p.Status.Phase = corev1.PodFailed
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}
				}
				return false, nil, nil
			})
			var out bytes.Buffer
			in := &Installer{Helm: helmConfig(t), Kube: kube, Gateway: gw, Namespace: Namespace, Out: &out, Poll: time.Millisecond}
			vals, _ := SplitValues(map[string]any{"global": map[string]any{"tag": "v7"}})
			if err := in.Apply(context.Background(), vals, time.Minute); err != nil {
				t.Fatal(err)
			}
			in.Kube = kube
			err := in.Uninstall(context.Background(), time.Minute)
			if failNode != "" {
				if err == nil || !strings.Contains(err.Error(), "eBPF cleanup failed on 1 nodes") || !strings.Contains(err.Error(), "node node2: exited 1") {
					t.Fatalf("err = %v, want node2's failure", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var nodes []string
			for _, p := range created {
				nodes = append(nodes, p.Spec.NodeName)
				if p.Spec.Containers[0].Image != "ambient/ztunnel:v7" {
					t.Errorf("cleanup image %q, want the installed ambient/ztunnel:v7", p.Spec.Containers[0].Image)
				}
			}
			if !slices.Equal(nodes, []string{"node1", "node2"}) {
				t.Errorf("cleanup pods on %v, want node1 and node2", nodes)
			}
			ctx := context.Background()
			if l, _ := kube.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
				t.Errorf("cleanup pods left: %d", len(l.Items))
			}
			if _, err := kube.CoreV1().Secrets(Namespace).Get(ctx, "istio-ca-secret", metav1.GetOptions{}); err == nil {
				t.Error("istio-ca-secret kept")
			}
			if _, err := kube.CoreV1().Secrets(Namespace).Get(ctx, "cacerts", metav1.GetOptions{}); err != nil {
				t.Errorf("the user's cacerts Secret was deleted: %v", err)
			}
			if _, err := kube.CoordinationV1().Leases(Namespace).Get(ctx, "istiod-lite", metav1.GetOptions{}); err == nil {
				t.Error("Lease kept")
			}
			if _, err := kube.CoreV1().ConfigMaps("apps").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}); err == nil {
				t.Error("root cert ConfigMap kept")
			}
			if _, err := kube.CoreV1().ConfigMaps("apps").Get(ctx, "mine", metav1.GetOptions{}); err != nil {
				t.Errorf("an unrelated ConfigMap was deleted: %v", err)
			}
			if _, err := gw.GatewayV1().GatewayClasses().Get(ctx, "istio-waypoint", metav1.GetOptions{}); err == nil {
				t.Error("GatewayClass kept although no Gateway uses it")
			}
			if failNode == "" && !strings.Contains(out.String(), "✔ eBPF programs and pins removed from 2 nodes") {
				t.Errorf("output:\n%s", out.String())
			}
		})
	}
}

// TestUninstallKeepsUsedGatewayClass: a waypoint still using the class keeps
// it, and the output says which.
func TestUninstallKeepsUsedGatewayClass(t *testing.T) {
	kube := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}})
	gw := gwfake.NewSimpleClientset(&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "istio-waypoint"}, Spec: gwv1.GatewayClassSpec{ControllerName: "istio.io/mesh-controller"}})
	// Created through the client: the fake's object tracker does not list Gateways added up front.
	if _, err := gw.GatewayV1().Gateways("apps").Create(context.Background(), &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "apps"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "istio-waypoint"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	in := &Installer{Helm: helmConfig(t), Kube: kube, Gateway: gw, Namespace: Namespace, Out: &out, Poll: time.Millisecond}
	if err := in.Uninstall(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.GatewayV1().GatewayClasses().Get(context.Background(), "istio-waypoint", metav1.GetOptions{}); err != nil {
		t.Errorf("GatewayClass deleted under a waypoint: %v", err)
	}
	if !strings.Contains(out.String(), "waypoints apps/waypoint still use it") {
		t.Errorf("output:\n%s", out.String())
	}
}
