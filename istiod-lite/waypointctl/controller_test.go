package waypointctl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

func TestMain(m *testing.M) {
	// TestKubeE2E talks to a real API server: client-go keeps idle HTTP/2
	// connections (and their read loops) in its shared transport cache.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"))
}

// failsafe bounds waits for informers to catch up; a hang guard, not a
// latency assertion.
const failsafe = 30 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	t    *testing.T
	ctx  context.Context
	kube *kubefake.Clientset
	gw   *gwfake.Clientset
	c    *Controller
	cs   *caches
	reg  *prometheus.Registry
}

// newHarness starts the controller's caches on fake clientsets; tests call
// reconcile directly, so each step is deterministic.
func newHarness(t *testing.T, kubeObjs []runtime.Object, gwObjs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, kube: kubefake.NewClientset(kubeObjs...), gw: gwfake.NewSimpleClientset(), reg: prometheus.NewRegistry()}
	// Created through the typed client: Gateway API types are registered
	// under v1 and v1beta1, and the fake tracker files objects passed to
	// NewSimpleClientset under whichever version it finds first.
	for _, o := range gwObjs {
		var err error
		switch o := o.(type) {
		case *gatewayv1.Gateway:
			_, err = h.gw.GatewayV1().Gateways(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *gatewayv1.GatewayClass:
			_, err = h.gw.GatewayV1().GatewayClasses().Create(context.Background(), o, metav1.CreateOptions{})
		default:
			t.Fatalf("unsupported object %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	h.gw.ClearActions()
	c, err := New(h.kube, h.gw, testConfig, zaptest.NewLogger(t), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	h.c = c
	cs, err := c.newCaches(func(item) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); cs.shutdown() })
	if err := cs.start(ctx); err != nil {
		t.Fatal(err)
	}
	h.ctx, h.cs = ctx, cs
	return h
}

func (h *harness) reconcile(gw *gatewayv1.Gateway) string {
	h.t.Helper()
	res, err := h.c.reconcile(h.ctx, h.cs, item{gw: types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}})
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (h *harness) gateway(gw *gatewayv1.Gateway) *gatewayv1.Gateway {
	h.t.Helper()
	got, err := h.gw.GatewayV1().Gateways(gw.Namespace).Get(h.ctx, gw.Name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return got
}

// synced waits until the caches hold the children as the API has them.
func (h *harness) synced(ns, name string) {
	h.t.Helper()
	eventually(h.t, "caches catch up", func() bool {
		d, err := h.kube.AppsV1().Deployments(ns).Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		s, err := h.kube.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cd, err1 := h.cs.deployments.Deployments(ns).Get(name)
		csvc, err2 := h.cs.services.Services(ns).Get(name)
		_, err3 := h.cs.sas.ServiceAccounts(ns).Get(name)
		// The fake clientsets do not set resourceVersion: compare content.
		return err1 == nil && err2 == nil && err3 == nil &&
			equality.Semantic.DeepEqual(cd, d) && equality.Semantic.DeepEqual(csvc, s)
	})
}

func (h *harness) gatewaySynced(gw *gatewayv1.Gateway) {
	h.t.Helper()
	want := h.gateway(gw)
	eventually(h.t, "gateway cache catches up", func() bool {
		g, err := h.cs.gateways.Gateways(gw.Namespace).Get(gw.Name)
		return err == nil && equality.Semantic.DeepEqual(g, want)
	})
}

func countActions(actions []k8stesting.Action, verb, resource, sub string) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && a.GetSubresource() == sub {
			n++
		}
	}
	return n
}

func TestReconcileCreatesOwnedChildren(t *testing.T) {
	gw := waypoint("wp")
	h := newHarness(t, nil, gw)
	if res := h.reconcile(gw); res != resultSuccess {
		t.Fatalf("result %q", res)
	}
	sa, err := h.kube.CoreV1().ServiceAccounts("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := h.kube.AppsV1().Deployments("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := h.kube.CoreV1().Services("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []metav1.Object{sa, dep, svc} {
		if !ControlledBy(o, gw) {
			t.Errorf("%T not controlled by the Gateway: %v", o, o.GetOwnerReferences())
		}
	}
	st := h.gateway(gw).Status
	checkCond(t, *findCond(st.Conditions, "Accepted"), "Accepted", condWant{"True", "Accepted"})
	checkCond(t, *findCond(st.Conditions, "Programmed"), "Programmed", condWant{"False", "Pending"})

	// Level-based: a second pass with nothing new writes nothing.
	h.synced("ns1", "wp")
	h.gatewaySynced(gw)
	kubeBefore := len(h.kube.Actions())
	statusBefore := countActions(h.gw.Actions(), "update", "gateways", "status")
	h.reconcile(gw)
	writes := countActions(h.kube.Actions()[kubeBefore:], "create", "serviceaccounts", "") +
		countActions(h.kube.Actions()[kubeBefore:], "update", "serviceaccounts", "")
	for _, r := range []string{"deployments", "services"} {
		writes += countActions(h.kube.Actions()[kubeBefore:], "create", r, "") + countActions(h.kube.Actions()[kubeBefore:], "update", r, "")
	}
	if statusWrites := countActions(h.gw.Actions(), "update", "gateways", "status") - statusBefore; writes != 0 || statusWrites != 0 {
		t.Errorf("second reconcile wrote %d children and %d statuses, want none", writes, statusWrites)
	}
	if got := testutil.ToFloat64(h.c.m.reconciles.WithLabelValues(resultSuccess)); got != 2 {
		t.Errorf("success reconciles %v, want 2", got)
	}
}

func TestWaypointForLabelUpdatesService(t *testing.T) {
	gw := waypoint("wp")
	h := newHarness(t, nil, gw)
	h.reconcile(gw)
	h.synced("ns1", "wp")

	u := h.gateway(gw)
	u.Labels = map[string]string{LabelWaypointFor: "workload"}
	if _, err := h.gw.GatewayV1().Gateways("ns1").Update(h.ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.gatewaySynced(gw)
	h.reconcile(gw)
	svc, err := h.kube.CoreV1().Services("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Labels[LabelWaypointFor]; got != "workload" {
		t.Errorf("service %s=%q, want workload", LabelWaypointFor, got)
	}
}

func TestProgrammedWhenDeploymentReady(t *testing.T) {
	gw := waypoint("wp")
	h := newHarness(t, nil, gw)
	h.reconcile(gw)
	h.synced("ns1", "wp")

	dep, _ := h.kube.AppsV1().Deployments("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	dep.Status.ReadyReplicas, dep.Status.Replicas = 1, 1
	if _, err := h.kube.AppsV1().Deployments("ns1").UpdateStatus(h.ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, _ := h.kube.CoreV1().Services("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	svc.Spec.ClusterIP = "10.96.0.7"
	if _, err := h.kube.CoreV1().Services("ns1").Update(h.ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.synced("ns1", "wp")
	h.gatewaySynced(gw)
	h.reconcile(gw)

	st := h.gateway(gw).Status
	checkCond(t, *findCond(st.Conditions, "Programmed"), "Programmed", condWant{"True", "Programmed"})
	var addrs []string
	for _, a := range st.Addresses {
		addrs = append(addrs, string(*a.Type)+"="+a.Value)
	}
	if want := "IPAddress=10.96.0.7 Hostname=wp.ns1.svc.cluster.local"; strings.Join(addrs, " ") != want {
		t.Errorf("addresses %v, want %s", addrs, want)
	}
	if p := findCond(st.Conditions, "Programmed"); p.ObservedGeneration != 3 {
		t.Errorf("observedGeneration %d, want 3", p.ObservedGeneration)
	}
	// The service kept its allocated IP through our reconcile.
	if svc, _ := h.kube.CoreV1().Services("ns1").Get(h.ctx, "wp", metav1.GetOptions{}); svc.Spec.ClusterIP != "10.96.0.7" {
		t.Errorf("clusterIP %q after reconcile", svc.Spec.ClusterIP)
	}
}

func TestOtherClassIgnored(t *testing.T) {
	gw := waypoint("ingress", func(gw *gatewayv1.Gateway) { gw.Spec.GatewayClassName = "istio" })
	h := newHarness(t, nil, gw)
	if res := h.reconcile(gw); res != resultIgnored {
		t.Errorf("result %q, want %q", res, resultIgnored)
	}
	for _, a := range h.kube.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			t.Errorf("wrote for a Gateway of another class: %v", a)
		}
	}
	if n := countActions(h.gw.Actions(), "update", "gateways", "status"); n != 0 {
		t.Errorf("%d status updates for a Gateway of another class", n)
	}
}

func TestNoHBONEListenerNotAccepted(t *testing.T) {
	gw := waypoint("wp", func(gw *gatewayv1.Gateway) {
		gw.Spec.Listeners = []gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}
	})
	h := newHarness(t, nil, gw)
	if res := h.reconcile(gw); res != resultInvalid {
		t.Errorf("result %q, want %q", res, resultInvalid)
	}
	st := h.gateway(gw).Status
	a := findCond(st.Conditions, "Accepted")
	checkCond(t, *a, "Accepted", condWant{"False", "InvalidParameters"})
	if !strings.Contains(a.Message, "HBONE") {
		t.Errorf("message %q does not say what is missing", a.Message)
	}
	if _, err := h.kube.AppsV1().Deployments("ns1").Get(h.ctx, "wp", metav1.GetOptions{}); err == nil {
		t.Error("deployed a waypoint for an invalid Gateway")
	}
}

func TestForeignDeploymentLeftAlone(t *testing.T) {
	gw := waypoint("wp")
	foreign := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns1", Labels: map[string]string{LabelManaged: ManagedValue}},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}},
	}
	h := newHarness(t, []runtime.Object{foreign}, gw)
	h.reconcile(gw)
	got, _ := h.kube.AppsV1().Deployments("ns1").Get(h.ctx, "wp", metav1.GetOptions{})
	if len(got.OwnerReferences) != 0 || got.Spec.Template.Spec.Containers[0].Image != "app:1" {
		t.Errorf("foreign Deployment modified: %+v", got)
	}
	p := findCond(h.gateway(gw).Status.Conditions, "Programmed")
	checkCond(t, *p, "Programmed", condWant{"False", "NoResources"})
	if !strings.Contains(p.Message, "not controlled by Gateway") {
		t.Errorf("message %q", p.Message)
	}
}

func TestGatewayClassCreatedAndAccepted(t *testing.T) {
	h := newHarness(t, nil)
	if res, err := h.c.reconcile(h.ctx, h.cs, classItem); err != nil || res != resultSuccess {
		t.Fatalf("result %q err %v", res, err)
	}
	gc, err := h.gw.GatewayV1().GatewayClasses().Get(h.ctx, ClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gc.Spec.ControllerName != ControllerName {
		t.Errorf("controllerName %q", gc.Spec.ControllerName)
	}
	checkCond(t, *findCond(gc.Status.Conditions, "Accepted"), "Accepted", condWant{"True", "Accepted"})
}

func TestGatewayClassOfAnotherController(t *testing.T) {
	gc := DesiredGatewayClass()
	gc.Spec.ControllerName = "example.com/other"
	gw := waypoint("wp")
	h := newHarness(t, nil, gc, gw)
	if res, err := h.c.reconcile(h.ctx, h.cs, classItem); err != nil || res != resultIgnored {
		t.Errorf("class: result %q err %v", res, err)
	}
	if res := h.reconcile(gw); res != resultIgnored {
		t.Errorf("gateway of a class we do not control: result %q", res)
	}
	if n := len(h.kube.Actions()); n != 0 && countActions(h.kube.Actions(), "create", "deployments", "") != 0 {
		t.Error("deployed a waypoint for another controller's class")
	}
}

// TestRun drives the whole loop: informers, queue, workers.
func TestRun(t *testing.T) {
	kube, gwc := kubefake.NewClientset(), gwfake.NewSimpleClientset()
	c, err := New(kube, gwc, testConfig, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	gw := waypoint("wp")
	if _, err := gwc.GatewayV1().Gateways("ns1").Create(ctx, gw, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Deployment created", func() bool {
		d, err := kube.AppsV1().Deployments("ns1").Get(ctx, "wp", metav1.GetOptions{})
		return err == nil && ControlledBy(d, gw)
	})
	// The Service is created after the Deployment, in the same reconcile.
	eventually(t, "Service created", func() bool {
		s, err := kube.CoreV1().Services("ns1").Get(ctx, "wp", metav1.GetOptions{})
		return err == nil && ControlledBy(s, gw)
	})
	eventually(t, "GatewayClass accepted", func() bool {
		gc, err := gwc.GatewayV1().GatewayClasses().Get(ctx, ClassName, metav1.GetOptions{})
		return err == nil && findCond(gc.Status.Conditions, "Accepted") != nil
	})
	// Readiness arrives through the Deployment informer.
	dep, _ := kube.AppsV1().Deployments("ns1").Get(ctx, "wp", metav1.GetOptions{})
	dep.Status.ReadyReplicas = 1
	if _, err := kube.AppsV1().Deployments("ns1").UpdateStatus(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services("ns1").Get(ctx, "wp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.ClusterIP = "10.96.0.9"
	if _, err := kube.CoreV1().Services("ns1").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Gateway Programmed", func() bool {
		g, err := gwc.GatewayV1().Gateways("ns1").Get(ctx, "wp", metav1.GetOptions{})
		if err != nil {
			return false
		}
		p := findCond(g.Status.Conditions, "Programmed")
		return p != nil && p.Status == metav1.ConditionTrue
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
