//go:build e2e

package waypoint

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, framework.InstallMesh) }

// TestWaypointRouting: a namespace-wide waypoint applies an HTTPRoute that
// splits 90/10 between two versions and sends x-version: v2 to v2; the
// requests visibly traverse the waypoint (its istio_requests_total).
func TestWaypointRouting(t *testing.T) {
	f := framework.New(t, map[string]string{"istio.io/dataplane-mode": "ambient"})
	f.DeployEcho(framework.EchoOptions{Name: "reviews", Version: "v1", ServiceAccount: "reviews", Node: "node1"})
	f.DeployEcho(framework.EchoOptions{Name: "reviews", Version: "v2", ServiceAccount: "reviews", Node: "node2"})
	f.Apply(`apiVersion: v1
kind: Service
metadata: {name: reviews-v1}
spec:
  selector: {app: reviews, version: v1}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2}
spec:
  selector: {app: reviews, version: v2}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: productpage}
`)
	f.WaitDeploymentReady("reviews-v1", 90*time.Second)
	f.WaitDeploymentReady("reviews-v2", 90*time.Second)

	if out, err := f.Ambientctl(f.Ctx, "waypoint", "apply", "-n", f.Namespace, "--enroll-namespace", "--wait", "--timeout", "2m"); err != nil {
		t.Fatal(err)
	} else {
		t.Log(out)
	}
	f.Apply(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs:
  - {group: "", kind: Service, name: reviews, port: 80}
  rules:
  - matches:
    - headers: [{name: x-version, value: v2}]
    backendRefs:
    - {name: reviews-v2, port: 80}
  - backendRefs:
    - {name: reviews-v1, port: 80, weight: 90}
    - {name: reviews-v2, port: 80, weight: 10}
`)
	svc, err := f.Client.CoreV1().Services(f.Namespace).Get(f.Ctx, "reviews", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("http://%s:80/", svc.Spec.ClusterIP)
	n := 0
	run := func(args ...string) framework.EchoSummary {
		n++
		return f.RunEchoClientAs(fmt.Sprintf("productpage-%d", n), "node1", "productpage",
			append([]string{"--start-delay", "2s", "--target", target}, args...)...)
	}

	// Header match: every request with x-version: v2 lands on v2.
	f.Eventually(90*time.Second, "x-version: v2 routed to v2 by the waypoint", func() error {
		res := run("--count", "20", "-H", "x-version:v2")
		if res.OK != 20 || res.ByVersion["v2"] != 20 {
			return fmt.Errorf("%d/20 ok, by version %v: %v", res.OK, res.ByVersion, res.ErrorSamples)
		}
		return nil
	})

	// Weights: 1,000 requests split 90/10 within ±3 points.
	res := run("--count", "1000", "--concurrency", "4")
	if res.OK != 1000 {
		t.Fatalf("weighted: %d/1000 ok: %v", res.OK, res.ErrorSamples)
	}
	share := float64(res.ByVersion["v2"]) / 10
	if share < 7 || share > 13 {
		t.Errorf("v2 got %.1f%% of 1000 requests, want 10%% ± 3 (by version %v)", share, res.ByVersion)
	}

	// The requests went through the waypoint: its request metric counts them.
	pods, err := f.Client.CoreV1().Pods(f.Namespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "gateway.networking.k8s.io/gateway-name=waypoint"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no waypoint pod: %v", err)
	}
	b, err := f.ProxyGet(&pods.Items[0], "15020", "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "istio_requests_total") || !strings.Contains(string(b), `reporter="waypoint"`) {
		t.Errorf("waypoint metrics lack istio_requests_total{reporter=\"waypoint\"}")
	}
}
