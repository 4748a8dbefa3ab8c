package framework

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// WaypointName is the Gateway ambientctl creates by default.
const WaypointName = "waypoint"

// Gateway API route resources, for RouteConditions.
var (
	HTTPRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	GRPCRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"}
)

// Sub returns the view of a subtest st of t: same namespace and context,
// st's failures and logs. Use it in t.Run (also with st.Parallel()).
func (t *T) Sub(st *testing.T) *T {
	return &T{T: st, Env: t.Env, Namespace: t.Namespace, Ctx: t.Ctx}
}

// ApplyWaypoint deploys the namespace's waypoint with ambientctl
// (`waypoint apply --enroll-namespace --wait`), binding every Service of
// the test's namespace to it.
func (t *T) ApplyWaypoint() {
	t.Helper()
	out, err := t.Ambientctl(t.Ctx, "waypoint", "apply", "-n", t.Namespace, "--enroll-namespace", "--wait", "--timeout", "2m")
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out)
}

// WaypointPod returns a running pod of the namespace's waypoint gateway.
func (t *T) WaypointPod(gateway string) *corev1.Pod {
	t.Helper()
	for _, p := range t.Pods("gateway.networking.k8s.io/gateway-name=" + gateway) {
		if p.Status.Phase == corev1.PodRunning {
			return &p
		}
	}
	t.Fatalf("no running pod of waypoint %s", gateway)
	return nil
}

// ServiceIP returns a Service's ClusterIP.
func (t *T) ServiceIP(name string) string {
	t.Helper()
	svc, err := t.Client.CoreV1().Services(t.Namespace).Get(t.Ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service %s: %v", name, err)
	}
	return svc.Spec.ClusterIP
}

// RouteConditions returns the conditions that controllers wrote for the
// parent named parentName in a route's status.parents (route is HTTPRoutes
// or GRPCRoutes), keyed by type. It is empty while no status is written.
func (t *T) RouteConditions(route schema.GroupVersionResource, name, parentName string) (map[string]metav1.Condition, error) {
	obj, err := t.Route(route, name)
	if err != nil {
		return nil, err
	}
	parents, _, err := unstructured.NestedSlice(obj.Object, "status", "parents")
	if err != nil {
		return nil, fmt.Errorf("%s %s status.parents: %w", route.Resource, name, err)
	}
	out := map[string]metav1.Condition{}
	for _, p := range parents {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		if ref, _, _ := unstructured.NestedString(pm, "parentRef", "name"); ref != parentName {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(pm, "conditions")
		for _, c := range conds {
			cm, ok := c.(map[string]any)
			if !ok {
				continue
			}
			var cond metav1.Condition
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cm, &cond); err != nil {
				return nil, fmt.Errorf("%s %s: condition %v: %w", route.Resource, name, cm, err)
			}
			out[cond.Type] = cond
		}
	}
	return out, nil
}

// Route reads a route of the test's namespace as the API server stores it
// (fields its CRD does not know are pruned).
func (t *T) Route(route schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
	dyn, err := dynamic.NewForConfig(t.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	obj, err := dyn.Resource(route).Namespace(t.Namespace).Get(t.Ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", route.Resource, name, err)
	}
	return obj, nil
}

// WaitRouteCondition waits until the route's status for parentName has a
// condition of type condType with the given status and reason, and returns
// it.
func (t *T) WaitRouteCondition(route schema.GroupVersionResource, name, parentName, condType string, status metav1.ConditionStatus, reason string, timeout time.Duration) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	t.Eventually(timeout, fmt.Sprintf("%s %s parent %s: %s=%s (%s)", route.Resource, name, parentName, condType, status, reason), func() error {
		conds, err := t.RouteConditions(route, name, parentName)
		if err != nil {
			return err
		}
		c, ok := conds[condType]
		if !ok {
			return fmt.Errorf("no %s condition yet (have %v)", condType, conds)
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, c.Message)
		}
		got = c
		return nil
	})
	return got
}
