//go:build e2e

package waypoint

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

// l7Routes: the HTTPRoute "echo" (timeout, retry, no retry, default with a
// header set by the waypoint), the HTTPRoute "missing" whose only backend
// does not exist, a GRPCRoute on the gRPC port, and an L7
// AuthorizationPolicy on the Service "guarded" (same pods as echo).
const l7Routes = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 80}
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 2s}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    retry: {attempts: 2, codes: [503], backoff: 10ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /unretried}}]
    backendRefs: [{name: echo, port: 80}]
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: default}]}
    backendRefs: [{name: echo, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing}
spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 80}
  rules:
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nope, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-grpc}
spec:
  parentRefs:
  - {group: "", kind: Service, name: echo, port: 7070}
  rules:
  - matches: [{method: {service: echo.Echo}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-grpc-route, value: echo-grpc}]}
    backendRefs: [{name: echo, port: 7070}]
`

// l7Policy allows GET /public to anyone and POST /admin to the service
// account "admin" only, at the waypoint (targetRefs to the Service).
const l7Policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: guarded}
spec:
  targetRefs:
  - {group: "", kind: Service, name: guarded}
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET], paths: [/public]}}]
  - from: [{source: {principals: ["cluster.local/ns/%s/sa/admin"]}}]
    to: [{operation: {methods: [POST], paths: [/admin]}}]
`

// TestWaypointL7 exercises one namespace waypoint in front of one echo pod
// (on another node than the clients): the headers the waypoint adds as the
// server sees them, a 2 s request timeout (504), retries turning a backend
// failing one request in two into success, an L7 AuthorizationPolicy per
// principal, gRPC unary and streaming calls through a GRPCRoute, and a route
// to a missing Service reported as ResolvedRefs=False while the others keep
// working.
func TestWaypointL7(t *testing.T) {
	f := framework.New(t, map[string]string{"istio.io/dataplane-mode": "ambient"})
	// One replica: the fail-every knob counts per pod.
	f.DeployEcho(framework.EchoOptions{Name: "echo", ServiceAccount: "echo", Node: "node2"})
	f.Apply(`apiVersion: v1
kind: Service
metadata: {name: guarded}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: admin}
`)
	f.WaitDeploymentReady("echo-v1", 90*time.Second)
	f.ApplyWaypoint()
	f.Apply(l7Routes)
	f.Apply(fmt.Sprintf(l7Policy, f.Namespace))

	echoIP, guardedIP := f.ServiceIP("echo"), f.ServiceIP("guarded")
	var pods atomic.Int32
	// runNamed runs an echo client pod on node1 as serviceAccount and
	// returns its summary and the pod's name.
	runNamed := func(ft *framework.T, serviceAccount, target string, args ...string) (framework.EchoSummary, string) {
		ft.Helper()
		name := fmt.Sprintf("%s-%d", serviceAccount, pods.Add(1))
		return ft.RunEchoClientAs(name, "node1", serviceAccount,
			append([]string{"--start-delay", "2s", "--target", target}, args...)...), name
	}
	run := func(ft *framework.T, serviceAccount, target string, args ...string) framework.EchoSummary {
		ft.Helper()
		res, _ := runNamed(ft, serviceAccount, target, args...)
		return res
	}
	httpTarget := func(ip, path string) string { return fmt.Sprintf("http://%s:80%s", ip, path) }

	// The routes are in force once the waypoint sets x-route on "/".
	f.Eventually(90*time.Second, "the waypoint applies HTTPRoute echo", func() error {
		res := run(f, "client", httpTarget(echoIP, "/"), "--count", "3")
		if res.OK != 3 || res.SeenHeaders["X-Route"] != "default" {
			return fmt.Errorf("%d/3 ok, codes %v, server saw headers %v: %v", res.OK, res.ByCode, res.SeenHeaders, res.ErrorSamples)
		}
		return nil
	})

	t.Run("l7", func(t *testing.T) {
		t.Run("HeadersAddedByWaypoint", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			res, name := runNamed(ft, "client", httpTarget(echoIP, "/"), "--count", "2",
				"-H", "traceparent: 00-"+traceID+"-"+parentID+"-01")
			if res.OK != 2 {
				t.Fatalf("%d/2 ok: %v %v", res.OK, res.ByCode, res.ErrorSamples)
			}
			seen := res.SeenHeaders
			t.Logf("headers the server saw: %v", seen)
			if seen["X-Request-Id"] == "" || seen["X-Forwarded-Proto"] != "http" || seen["X-Forwarded-For"] == "" {
				t.Errorf("server saw %v, want X-Request-Id, X-Forwarded-Proto: http and X-Forwarded-For added by the waypoint", seen)
			}
			// X-Forwarded-For names the client pod (from HBONE's forwarded:
			// for=), not a proxy on the way.
			if p, err := ft.Client.CoreV1().Pods(ft.Namespace).Get(ft.Ctx, name, metav1.GetOptions{}); err != nil {
				t.Error(err)
			} else if p.Status.PodIP != "" && seen["X-Forwarded-For"] != p.Status.PodIP {
				t.Errorf("X-Forwarded-For %q, want the client pod's IP %s", seen["X-Forwarded-For"], p.Status.PodIP)
			}
			// The waypoint continues the trace with a span of its own.
			m := regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`).FindStringSubmatch(seen["Traceparent"])
			if m == nil || m[1] != traceID || m[2] == parentID {
				t.Errorf("server saw traceparent %q, want trace %s with a new parent id (not %s)", seen["Traceparent"], traceID, parentID)
			}
		})

		t.Run("RequestTimeout", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			slow := run(ft, "client", httpTarget(echoIP, "/slow?delay=3s"), "--count", "2")
			if slow.ByCode["504"] != 2 {
				t.Errorf("3 s backend behind a 2 s timeout: codes %v, want 2 × 504: %v", slow.ByCode, slow.ErrorSamples)
			}
			t.Logf("3 s backend: codes %v after %.0f ms (p50)", slow.ByCode, slow.LatencyMs.P50)
			if slow.LatencyMs.P50 < 1900 {
				t.Errorf("504 after %.0f ms, before the 2 s timeout", slow.LatencyMs.P50)
			}
			fast := run(ft, "client", httpTarget(echoIP, "/slow?delay=200ms"), "--count", "2")
			if fast.OK != 2 {
				t.Errorf("200 ms backend behind a 2 s timeout: codes %v, want 2 × 200: %v", fast.ByCode, fast.ErrorSamples)
			}
		})

		t.Run("Retries", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			// The two runs are sequential: the backend fails the 1st, 3rd,
			// 5th... request carrying fail-every=2 that reaches it.
			plain := run(ft, "client", httpTarget(echoIP, "/unretried?fail-every=2"), "--count", "50")
			t.Logf("without retry: codes %v", plain.ByCode)
			if plain.Responses != 50 || plain.ByCode["503"] < 15 || plain.ByCode["503"] > 35 {
				t.Errorf("without retry: codes %v over %d responses, want about half 503", plain.ByCode, plain.Responses)
			}
			if !routeRuleHas(ft, "echo", 1, "retry") {
				t.Fatal("the API server pruned HTTPRoute spec.rules[].retry: the installed HTTPRoute CRD is not the " +
					"experimental-channel one charts/base ships (apply charts/base/crds)")
			}
			retried := run(ft, "client", httpTarget(echoIP, "/flaky?fail-every=2"), "--count", "50")
			t.Logf("with retry: codes %v", retried.ByCode)
			if retried.OK != 50 {
				t.Errorf("with retry (attempts 2, codes [503]): %d/50 ok, codes %v: %v", retried.OK, retried.ByCode, retried.ErrorSamples)
			}
		})

		t.Run("AuthorizationPolicy", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			ft.Eventually(60*time.Second, "POST /admin denied to client", func() error {
				res := run(ft, "client", httpTarget(guardedIP, "/admin"), "--method", "POST", "--count", "2")
				if res.ByCode["403"] != 2 {
					return fmt.Errorf("codes %v, want 2 × 403: %v", res.ByCode, res.ErrorSamples)
				}
				return nil
			})
			for _, tc := range []struct {
				name, serviceAccount, method, path, want string
			}{
				{"ClientGetPublic", "client", "GET", "/public", "200"},
				{"ClientGetAdmin", "client", "GET", "/admin", "403"},
				{"AdminPostAdmin", "admin", "POST", "/admin", "200"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					res := run(f.Sub(t), tc.serviceAccount, httpTarget(guardedIP, tc.path), "--method", tc.method, "--count", "2")
					if res.ByCode[tc.want] != 2 {
						t.Errorf("%s %s as %s: codes %v, want 2 × %s: %v", tc.method, tc.path, tc.serviceAccount, res.ByCode, tc.want, res.ErrorSamples)
					}
				})
			}
		})

		t.Run("GRPC", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			target := fmt.Sprintf("grpc://%s:%d", echoIP, framework.EchoGRPCPort)
			ft.Eventually(60*time.Second, "unary gRPC through the GRPCRoute", func() error {
				res := run(ft, "client", target, "--count", "10")
				if res.OK != 10 || res.SeenHeaders["x-grpc-route"] != "echo-grpc" {
					return fmt.Errorf("%d/10 ok, codes %v, metadata seen %v: %v", res.OK, res.ByCode, res.SeenHeaders, res.ErrorSamples)
				}
				return nil
			})
			res := run(ft, "client", target, "--count", "3", "--grpc-stream", "5")
			if res.OK != 3 || res.SeenHeaders["x-grpc-route"] != "echo-grpc" {
				t.Errorf("streams of 5 messages: %d/3 ok, codes %v, metadata seen %v: %v", res.OK, res.ByCode, res.SeenHeaders, res.ErrorSamples)
			}
		})

		t.Run("MissingBackend", func(t *testing.T) {
			t.Parallel()
			ft := f.Sub(t)
			c := ft.WaitRouteCondition(framework.HTTPRoutes, "missing", "echo", "ResolvedRefs", metav1.ConditionFalse, "BackendNotFound", 60*time.Second)
			if !strings.Contains(c.Message, "nope") {
				t.Errorf("ResolvedRefs message %q does not name the missing Service nope", c.Message)
			}
			conds, err := ft.RouteConditions(framework.HTTPRoutes, "echo", "echo")
			if err != nil {
				t.Fatal(err)
			}
			if c := conds["ResolvedRefs"]; c.Status != metav1.ConditionTrue {
				t.Errorf("HTTPRoute echo ResolvedRefs = %s (%s): %s, want True", c.Status, c.Reason, c.Message)
			}
			missing := run(ft, "client", httpTarget(echoIP, "/missing"), "--count", "2")
			if missing.ByCode["500"] != 2 {
				t.Errorf("/missing: codes %v, want 2 × 500 (no backend): %v", missing.ByCode, missing.ErrorSamples)
			}
			other := run(ft, "client", httpTarget(echoIP, "/other"), "--count", "2")
			if other.OK != 2 || other.SeenHeaders["X-Route"] != "default" {
				t.Errorf("/other next to the broken route: %d/2 ok, codes %v: %v", other.OK, other.ByCode, other.ErrorSamples)
			}
		})
	})

	// All of it went through the waypoint: its metrics count the 504s and
	// 403s it answered.
	b, err := f.ProxyGet(f.WaypointPod(framework.WaypointName), "15020", "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"504", "403"} {
		if !regexp.MustCompile(`istio_requests_total\{[^}]*reporter="waypoint"[^}]*response_code="` + code + `"|istio_requests_total\{[^}]*response_code="` + code + `"[^}]*reporter="waypoint"`).Match(b) {
			t.Errorf("waypoint metrics have no istio_requests_total{reporter=\"waypoint\", response_code=%q}", code)
		}
	}
}

// routeRuleHas tells whether rule i of HTTPRoute name, as stored, has field
// (false when the CRD pruned it).
func routeRuleHas(f *framework.T, name string, i int, field string) bool {
	f.Helper()
	obj, err := f.Route(framework.HTTPRoutes, name)
	if err != nil {
		f.Fatal(err)
	}
	rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
	if i >= len(rules) {
		f.Fatalf("HTTPRoute %s has %d rules, want more than %d", name, len(rules), i)
	}
	rule, _ := rules[i].(map[string]any)
	_, ok := rule[field]
	return ok
}
