package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/ambient-mesh/ambient/istiod-lite/config"
	pkgkube "github.com/ambient-mesh/ambient/pkg/kube"
	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

// TestKubeE2E runs istiod-lite against a real API server as a follower: its
// system namespace is a scratch namespace whose Lease is held by someone
// else, so it writes nothing but its CA Secret there. A pod bound to a
// made-up node (no node agent runs it; its status is written by the test)
// must reach an xDS client and /debug/model, and leave both when deleted.
//
//	AMBIENT_E2E_KUBECONFIG=/path/to/kubeconfig go test ./istiod-lite/app -run KubeE2E
func TestKubeE2E(t *testing.T) {
	path := os.Getenv("AMBIENT_E2E_KUBECONFIG")
	if path == "" {
		t.Skip("AMBIENT_E2E_KUBECONFIG not set")
	}
	rc, err := pkgkube.RESTConfig(path, "istiod-lite-e2e")
	if err != nil {
		t.Fatal(err)
	}
	clients, err := pkgkube.NewClients(rc)
	if err != nil {
		t.Fatal(err)
	}
	kc := clients.Kube
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	nsObj, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "ambient-app-e2e-", Labels: map[string]string{"istio.io/dataplane-mode": "ambient"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	t.Cleanup(func() {
		zero := int64(0)
		_ = kc.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		_ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	holder, dur, now := "e2e-blocker", int32(3600), metav1.NewMicroTime(time.Now())
	if _, err := kc.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := config.Config{
		LogLevel: "info", TrustDomain: "cluster.local", CASource: config.CASourceSelfSigned,
		ZtunnelNamespace: ns, ZtunnelServiceAccount: "ztunnel", LeaderElect: true, PodName: "e2e-" + rand.String(5),
		Namespace: ns, WaypointImage: "ambient/waypoint:dev",
	}
	pl, tl, ml, rl := listen(t), listen(t), listen(t), listen(t)
	appCtx, stopApp := context.WithCancel(ctx)
	a, err := New(appCtx, cfg, zaptest.NewLogger(t), Deps{Clients: clients, PlaintextListener: pl, TLSListener: tl, MonitoringListener: ml, ReadyListener: rl})
	if err != nil {
		stopApp()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(appCtx) }()
	defer func() {
		stopApp()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	pod, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Labels: map[string]string{"app": "echo"}},
		Spec: corev1.PodSpec{NodeName: "ambient-app-e2e-node-" + rand.String(5),
			Containers: []corev1.Container{{Name: "echo", Image: "ambient/echo:dev"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.255.0.7", PodIPs: []corev1.PodIP{{IP: "10.255.0.7"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := kc.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	uid := "Kubernetes//Pod/" + ns + "/echo"
	rec := runClient(t, pl.Addr().String(), "ztunnel~10.0.0.1~ztunnel-e2e."+ns+"~"+ns+".svc.cluster.local", pkgxds.ZtunnelTypes)
	rec.waitFor(t, "workload "+uid, func(r map[string]map[string]proto.Message) bool { return r[pkgxds.AddressType][uid] != nil })

	resp, err := http.Get("http://" + ml.Addr().String() + "/debug/model")
	if err != nil {
		t.Fatal(err)
	}
	var mv ModelView
	err = json.NewDecoder(resp.Body).Decode(&mv)
	_ = resp.Body.Close()
	if err != nil || mv.Workloads[uid] == nil {
		t.Errorf("/debug/model has no %s (err %v)", uid, err)
	}

	zero := int64(0)
	if err := kc.CoreV1().Pods(ns).Delete(ctx, "echo", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "removal of "+uid, func(r map[string]map[string]proto.Message) bool { return r[pkgxds.AddressType][uid] == nil })
}
