package waypointctl

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// TestKubeE2E runs the controller against a real API server: the Gateway
// yields a ServiceAccount, Deployment and Service owned by it, the status
// reports the Service's ClusterIP, and the garbage collector of
// kube-controller-manager deletes the children with the Gateway. The
// waypoint is scaled to 0 replicas (annotation) so no pod has to run. Use a
// cluster where no istiod-lite is installed: two controllers would fight
// over the same objects.
//
//	AMBIENT_E2E_KUBECONFIG=/path/to/kubeconfig go test ./istiod-lite/waypointctl -run KubeE2E
func TestKubeE2E(t *testing.T) {
	path := os.Getenv("AMBIENT_E2E_KUBECONFIG")
	if path == "" {
		t.Skip("AMBIENT_E2E_KUBECONFIG not set")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gwc, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments("istio-system").Get(t.Context(), "istiod-lite", metav1.GetOptions{}); err == nil {
		t.Skip("istiod-lite is installed in this cluster: its controllers would fight this test's (run it on a cluster without the mesh, as make test-e2e does first)")
	}
	if !hasGatewayAPI(t, kube) {
		t.Skip("the Gateway API CRDs (gateway.networking.k8s.io/v1 gateways, gatewayclasses) are not installed in this cluster")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "waypointctl-e2e-" + rand.String(5)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})

	c, err := New(kube, gwc, testConfig, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	gw := waypoint("wp", withAnnotation(AnnotationReplicas, "0"))
	gw.Namespace, gw.UID, gw.Generation = ns, "", 0
	created, err := gwc.GatewayV1().Gateways(ns).Create(ctx, gw, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	poll(ctx, t, "children created and owned", func() bool {
		sa, err1 := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "wp", metav1.GetOptions{})
		dep, err2 := kube.AppsV1().Deployments(ns).Get(ctx, "wp", metav1.GetOptions{})
		svc, err3 := kube.CoreV1().Services(ns).Get(ctx, "wp", metav1.GetOptions{})
		return err1 == nil && err2 == nil && err3 == nil &&
			ControlledBy(sa, created) && ControlledBy(dep, created) && ControlledBy(svc, created)
	})
	poll(ctx, t, "status with the ClusterIP", func() bool {
		g, err := gwc.GatewayV1().Gateways(ns).Get(ctx, "wp", metav1.GetOptions{})
		if err != nil {
			return false
		}
		a := findCond(g.Status.Conditions, string(gatewayv1.GatewayConditionAccepted))
		return a != nil && a.Status == metav1.ConditionTrue && len(g.Status.Addresses) == 2
	})
	// The API server's defaults must not look like drift, or the controller
	// would update the children forever.
	_, wantDep, wantSvc := Desired(created, c.cfg)
	liveDep, err := kube.AppsV1().Deployments(ns).Get(ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if merged, changed := MergeDeployment(liveDep, wantDep); changed {
		a, _ := json.MarshalIndent(liveDep, "", " ")
		b, _ := json.MarshalIndent(merged, "", " ")
		t.Errorf("the defaulted Deployment differs from the desired one in fields we own:\nlive: %s\nmerged: %s", a, b)
	}
	liveSvc, err := kube.CoreV1().Services(ns).Get(ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, changed := MergeService(liveSvc, wantSvc); changed {
		t.Errorf("the defaulted Service differs from the desired one in fields we own")
	}

	if err := gwc.GatewayV1().Gateways(ns).Delete(ctx, "wp", metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "children garbage-collected", func() bool {
		_, err1 := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "wp", metav1.GetOptions{})
		_, err2 := kube.AppsV1().Deployments(ns).Get(ctx, "wp", metav1.GetOptions{})
		_, err3 := kube.CoreV1().Services(ns).Get(ctx, "wp", metav1.GetOptions{})
		return apierrors.IsNotFound(err1) && apierrors.IsNotFound(err2) && apierrors.IsNotFound(err3)
	})
}

func hasGatewayAPI(t *testing.T, kube kubernetes.Interface) bool {
	t.Helper()
	rl, err := kube.Discovery().ServerResourcesForGroupVersion("gateway.networking.k8s.io/v1")
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	found := map[string]bool{}
	for _, r := range rl.APIResources {
		found[r.Name] = true
	}
	return found["gateways"] && found["gateways/status"] && found["gatewayclasses"]
}

func poll(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("never happened: %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
