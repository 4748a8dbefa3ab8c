package status

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	istiometa "istio.io/api/meta/v1alpha1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	istiolisters "istio.io/client-go/pkg/listers/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
)

func TestMain(m *testing.M) {
	if err := os.Setenv("KUBE_FEATURE_WatchListClient", "false"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

func indexer(objs ...any) cache.Indexer {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		if err := idx.Add(o); err != nil {
			panic(err)
		}
	}
	return idx
}

func TestWriterWritesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	foreign := &istiometa.IstioCondition{Type: "Reconciled", Status: "True"}
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "l4", Generation: 4}}
	ap.Status.Conditions = []*istiometa.IstioCondition{foreign}
	untouched := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", Generation: 1}}
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", Generation: 2}}
	istio := istiofake.NewSimpleClientset(ap, untouched)
	gw := gwfake.NewSimpleClientset()
	if _, err := gw.GatewayV1().HTTPRoutes("ns").Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	desired := Desired{
		Policies:   map[Key][]metav1.Condition{{"ns", "l4"}: {{Type: "ZtunnelAccepted", Status: "True", Reason: "Accepted", Message: "ok"}}},
		HTTPRoutes: map[Key][]gatewayv1.RouteParentStatus{{"ns", "r"}: {{ParentRef: *svcRef("svc"), ControllerName: ctrl, Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", ObservedGeneration: 2}}}}},
	}
	apIdx, hrIdx := indexer(ap, untouched), indexer(route)
	w, err := New(Options{
		Istio: istio, Gateway: gw,
		Policies:   istiolisters.NewAuthorizationPolicyLister(apIdx),
		HTTPRoutes: gwlisters.NewHTTPRouteLister(hrIdx),
		GRPCRoutes: gwlisters.NewGRPCRouteLister(indexer()),
		Source:     func() (Desired, bool) { return desired, true },
		Controller: ctrl, Logger: zaptest.NewLogger(t), Now: func() time.Time { return t1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	istio.ClearActions()
	gw.ClearActions()
	if err := w.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got, err := istio.SecurityV1().AuthorizationPolicies("ns").Get(ctx, "l4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs := got.Status.Conditions
	if len(cs) != 2 || cs[0].GetType() != "Reconciled" || cs[1].GetType() != "ZtunnelAccepted" || cs[1].GetStatus() != "True" || cs[1].GetObservedGeneration() != 4 {
		t.Errorf("policy conditions = %v, want Reconciled kept and ZtunnelAccepted=True at generation 4", cs)
	}
	hr, err := gw.GatewayV1().HTTPRoutes("ns").Get(ctx, "r", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hr.Status.Parents) != 1 || hr.Status.Parents[0].ControllerName != ctrl || hr.Status.Parents[0].Conditions[0].LastTransitionTime.IsZero() {
		t.Errorf("route parents = %+v", hr.Status.Parents)
	}
	if n := countUpdates(istio.Actions()); n != 1 {
		t.Errorf("policy status updates = %d, want 1 (the untouched policy is not written)", n)
	}

	// Once the caches hold what was written, a round writes nothing.
	if err := apIdx.Update(got); err != nil {
		t.Fatal(err)
	}
	if err := hrIdx.Update(hr); err != nil {
		t.Fatal(err)
	}
	istio.ClearActions()
	gw.ClearActions()
	if err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(istio.Actions()) + len(gw.Actions()); n != 0 {
		t.Errorf("second round made %d API calls, want 0: %v %v", n, istio.Actions(), gw.Actions())
	}

	// The model stops reporting the policy: our condition goes, the foreign one stays.
	desired = Desired{}
	if err := w.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = istio.SecurityV1().AuthorizationPolicies("ns").Get(ctx, "l4", metav1.GetOptions{})
	if cs := got.Status.Conditions; len(cs) != 1 || cs[0].GetType() != "Reconciled" {
		t.Errorf("after removal conditions = %v, want only Reconciled", cs)
	}
	hr, _ = gw.GatewayV1().HTTPRoutes("ns").Get(ctx, "r", metav1.GetOptions{})
	if len(hr.Status.Parents) != 0 {
		t.Errorf("after removal route parents = %+v, want none", hr.Status.Parents)
	}
}

func countUpdates(actions []k8stesting.Action) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == "update" {
			n++
		}
	}
	return n
}
