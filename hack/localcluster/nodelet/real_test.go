package nodelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestRealAPIServer runs the nodelet against a real API server (no
// controller manager or scheduler needed: it creates its own namespace,
// ServiceAccount, kube-root-ca.crt ConfigMap and Node, and binds pods
// itself). Opt-in: NODELET_TEST_KUBECONFIG names an admin kubeconfig and
// NODELET_TEST_CA the API server's CA file. Pods run in a test netns.
func TestRealAPIServer(t *testing.T) {
	kc, caFile := os.Getenv("NODELET_TEST_KUBECONFIG"), os.Getenv("NODELET_TEST_CA")
	if kc == "" || caFile == "" {
		t.Skip("set NODELET_TEST_KUBECONFIG and NODELET_TEST_CA to run against a real API server")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1000000)
	ns, nodeName := "nodelet-test-"+suffix, "nodelet-test-"+suffix
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate := func(err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	mustCreate(err)
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	_, err = client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(ca)}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	mustCreate(err)
	t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })

	h := newHarness(t)
	h.client, h.cfg.Client, h.ns, h.real = client, client, ns, true
	h.cfg.Node.Name = nodeName
	h.cfg.APIServerCAFile = caFile
	h.start()

	out := filepath.Join(h.tmp, "mnt", "out")
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{
				{
					Name: "facts", Image: "shell",
					Command:      []string{"sh", "-c", "cat " + ServiceAccountMountPath + "/token > " + out + "/token; cat " + ServiceAccountMountPath + "/namespace > " + out + "/ns; exec sleep 100000"},
					VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: out}},
				},
				{
					Name: "web", Image: "testbin", Args: []string{"http-server", "127.0.0.1:18082", out},
					VolumeMounts:   []corev1.VolumeMount{{Name: "out", MountPath: out}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ns", Port: intstr.FromInt(18082)}}, PeriodSeconds: 1},
				},
			},
		},
	})
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "crash", Image: "shell", Command: []string{"sh", "-c", "exit 3"}}}},
	})
	p := h.waitPod("web", "ready", podReady)
	if len(p.Spec.Volumes) < 2 {
		t.Errorf("the API server did not inject the service-account volume: %v", p.Spec.Volumes)
	}
	vol := filepath.Join(h.cfg.StateDir, "pods", fmt.Sprintf("%s_%s_%s", ns, p.Name, p.UID), "volumes", "out")
	tok, err := os.ReadFile(filepath.Join(vol, "token"))
	if err != nil || strings.Count(string(tok), ".") != 2 {
		t.Errorf("service-account token %q (%v): want a JWT", tok, err)
	}
	if b, _ := os.ReadFile(filepath.Join(vol, "ns")); string(b) != ns {
		t.Errorf("namespace file %q", b)
	}
	h.waitPod("crash", "in CrashLoopBackOff", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := BuildNodeStatus(h.cfg.Node, node.Status, time.Now()); len(node.Status.Conditions) != len(st.Conditions) {
		t.Errorf("node status not written: %+v", node.Status)
	}
	if _, err := client.CoordinationV1().Leases(NodeLeaseNamespace).Get(ctx, nodeName, metav1.GetOptions{}); err != nil {
		t.Errorf("node lease: %v", err)
	}
	// Graceful deletion: the API server sets deletionTimestamp, the nodelet
	// stops the containers and removes the object.
	if err := client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	procs := pids(t, p)
	h.waitGone("web")
	for _, pid := range procs {
		if alive(pid) {
			t.Errorf("process %d survived pod deletion", pid)
		}
	}
}
