//go:build e2e

package istiodocs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/client"
	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, framework.InstallMesh) }

// bookinfo is Bookinfo's productpage and reviews (v1, v2) with the Services
// of bookinfo.yaml and bookinfo-versions.yaml; each Deployment runs the echo
// server on 9080 in place of the Bookinfo image.
func bookinfo() string {
	var b strings.Builder
	svc := func(name string, selector string) {
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata:
  name: %s
  labels:
    app: %s
    service: %s
spec:
  ports:
  - port: 9080
    name: http
  selector:
%s
---
`, name, name, name, selector)
	}
	deploy := func(app, version, sa string) {
		fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s-%[2]s
  labels:
    app: %[1]s
    version: %[2]s
spec:
  replicas: 1
  selector:
    matchLabels:
      app: %[1]s
      version: %[2]s
  template:
    metadata:
      labels:
        app: %[1]s
        version: %[2]s
    spec:
      serviceAccountName: %[3]s
      containers:
      - name: %[1]s
        image: %[4]s
        args: [server, --http-port, "9080", --tcp-port, "0", --grpc-port, "0"]
        env:
        - {name: VERSION, value: %[2]s}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: SERVICE_ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
        ports:
        - containerPort: 9080
        readinessProbe:
          httpGet: {path: /healthz, port: 9080}
          periodSeconds: 1
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: %[3]s
---
`, app, version, sa, framework.EchoImage)
	}
	svc("productpage", "    app: productpage")
	deploy("productpage", "v1", "bookinfo-productpage")
	svc("reviews", "    app: reviews")
	deploy("reviews", "v1", "bookinfo-reviews")
	deploy("reviews", "v2", "bookinfo-reviews")
	// bookinfo-versions.yaml
	svc("reviews-v1", "    app: reviews\n    version: v1")
	svc("reviews-v2", "    app: reviews\n    version: v2")
	// samples/curl/curl.yaml's ServiceAccount, and the ingress gateway's
	// (bookinfo-gateway-istio) that the guide's L4 policy admits.
	b.WriteString("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: curl\n---\n")
	b.WriteString("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: bookinfo-gateway-istio\n")
	return b.String()
}

// The guide's manifests, unchanged.
const (
	productpageZtunnel = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-ztunnel
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/bookinfo-gateway-istio
`
	waypointGateway = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  labels:
    istio.io/waypoint-for: service
  name: waypoint
  namespace: default
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
`
	productpageWaypoint = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-waypoint
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/curl
    to:
    - operation:
        methods: ["GET"]
`
	productpageZtunnelWithWaypoint = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-ztunnel
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/bookinfo-gateway-istio
        - cluster.local/ns/default/sa/waypoint
`
	reviewsRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 90
    - name: reviews-v2
      port: 9080
      weight: 10
`
)

// TestGettingStarted follows the guide: enroll, secure with an L4 policy,
// add a waypoint and an L7 policy, then split traffic.
func TestGettingStarted(t *testing.T) {
	// kubectl label namespace default istio.io/dataplane-mode=ambient
	f := framework.Existing(t, "default", map[string]string{"istio.io/dataplane-mode": "ambient"})
	f.Apply(bookinfo())
	for _, d := range []string{"productpage-v1", "reviews-v1", "reviews-v2"} {
		f.WaitDeploymentReady(d, 90*time.Second)
	}

	n := 0
	// curl runs the echo client as serviceAccount (the guide's
	// `kubectl exec deploy/curl -- curl ...`), by the Service's DNS name.
	curl := func(serviceAccount, url string, args ...string) client.Result {
		n++
		return f.RunEchoClientAs(fmt.Sprintf("%s-%d", serviceAccount, n), "", serviceAccount,
			append([]string{"--start-delay", "2s", "--target", url}, args...)...)
	}
	productpage := "http://productpage:9080/productpage"

	f.Eventually(60*time.Second, "productpage reachable in the mesh", func() error {
		if res := curl("curl", productpage, "--count", "3"); res.OK != 3 {
			return fmt.Errorf("%d/3 ok: %v", res.OK, res.ErrorSamples)
		}
		return nil
	})

	// Secure application access: L4 policy on productpage.
	f.Apply(productpageZtunnel)
	f.Eventually(60*time.Second, "curl refused by productpage-ztunnel", func() error {
		if res := curl("curl", productpage, "--count", "3"); res.OK != 0 || res.Responses != 0 {
			return fmt.Errorf("%d/3 ok, %d responses; want the connection reset", res.OK, res.Responses)
		}
		return nil
	})
	if res := curl("bookinfo-gateway-istio", productpage, "--count", "3"); res.OK != 3 {
		t.Fatalf("the principal productpage-ztunnel admits was refused: %d/3 ok: %v", res.OK, res.ErrorSamples)
	}

	// Deploy a waypoint: the Gateway `istioctl waypoint generate` prints,
	// then `kubectl label ns default istio.io/use-waypoint=waypoint`.
	f.Apply(waypointGateway)
	f.Eventually(2*time.Minute, "waypoint Gateway Programmed", func() error {
		raw, err := f.Client.CoreV1().RESTClient().Get().AbsPath("/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/waypoint").DoRaw(f.Ctx)
		if err != nil {
			return err
		}
		var gw struct {
			Status struct{ Conditions []metav1.Condition } `json:"status"`
		}
		if err := json.Unmarshal(raw, &gw); err != nil {
			return err
		}
		for _, c := range gw.Status.Conditions {
			if c.Type == "Programmed" && c.Status == metav1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", gw.Status.Conditions)
	})
	ns, err := f.Client.CoreV1().Namespaces().Get(f.Ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["istio.io/use-waypoint"] = "waypoint"
	if _, err := f.Client.CoreV1().Namespaces().Update(f.Ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// L7 policy on the productpage Service, and the ztunnel policy
	// widened to the waypoint's identity.
	f.Apply(productpageWaypoint)
	f.Apply(productpageZtunnelWithWaypoint)
	f.Eventually(90*time.Second, "curl GET allowed through the waypoint", func() error {
		res := curl("curl", productpage, "--count", "3")
		if res.OK != 3 {
			return fmt.Errorf("%d/3 ok, codes %v: %v", res.OK, res.ByCode, res.ErrorSamples)
		}
		if res.SeenHeaders["X-Forwarded-For"] == "" && res.SeenHeaders["Traceparent"] == "" {
			return fmt.Errorf("answered without traversing the waypoint (no headers it adds): %v", res.SeenHeaders)
		}
		return nil
	})
	if res := curl("curl", productpage, "--count", "3", "--method", "DELETE"); res.ByCode["403"] != 3 {
		t.Errorf("curl DELETE: codes %v, want 3 × 403 (methods: [GET]): %v", res.ByCode, res.ErrorSamples)
	}
	if res := curl("bookinfo-reviews", productpage, "--count", "3"); res.ByCode["403"] != 3 {
		t.Errorf("GET as bookinfo-reviews: codes %v, want 3 × 403 (principal not admitted): %v", res.ByCode, res.ErrorSamples)
	}

	// Control traffic: reviews split 90/10.
	f.Apply(reviewsRoute)
	const total = 400
	f.Eventually(90*time.Second, "reviews split 90/10 by the waypoint", func() error {
		res := curl("curl", "http://reviews:9080/", "--count", fmt.Sprint(total), "--concurrency", "4")
		v1, v2 := res.ByVersion["v1"], res.ByVersion["v2"]
		// 10% of 400 is 40 (σ = 6); a route that is not applied gives
		// about 200 (the Service's own spread over both versions).
		if res.OK != total || v1+v2 != total || v2 < 16 || v2 > 72 {
			return fmt.Errorf("%d/%d ok, v1=%d v2=%d; want v2 ≈ 10%%: %v", res.OK, total, v1, v2, res.ErrorSamples)
		}
		t.Logf("reviews: v1=%d v2=%d of %d", v1, v2, total)
		return nil
	})
}
