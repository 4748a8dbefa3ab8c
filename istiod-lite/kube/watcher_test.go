package kube

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		obj  any
		want string
	}{
		{&corev1.Pod{}, "Pod"},
		{&corev1.Service{}, "Service"},
		{&corev1.Namespace{}, "Namespace"},
		{&gatewayv1.Gateway{}, "Gateway"},
		{&gatewayv1.HTTPRoute{}, "HTTPRoute"},
		{&gatewayv1.GRPCRoute{}, "GRPCRoute"},
		{&securityv1.AuthorizationPolicy{}, "AuthorizationPolicy"},
		{&securityv1.PeerAuthentication{}, "PeerAuthentication"},
		{cache.DeletedFinalStateUnknown{Key: "a/b", Obj: &corev1.Pod{}}, "Pod"},
		{&corev1.ConfigMap{}, "other"},
	} {
		if got := kindOf(tc.obj); got != tc.want {
			t.Errorf("kindOf(%T) = %q, want %q", tc.obj, got, tc.want)
		}
	}
}

func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// TestTakeBatch: a batch keeps the time of its first event, the kinds and
// the pod keys (deletions of unknown final state included); taking it
// starts a new one.
func TestTakeBatch(t *testing.T) {
	w, err := NewWatcher(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1000, 0)
	w.now = func() time.Time { return clock }
	if b := w.TakeBatch(); !b.Empty() || b.PodsOnly() {
		t.Fatalf("batch before any event = %+v", b)
	}
	w.record(pod("a", "p1"), "add")
	clock = clock.Add(time.Second)
	w.record(pod("a", "p2"), "update")
	w.record(cache.DeletedFinalStateUnknown{Key: "b/p3", Obj: pod("b", "p3")}, "delete")
	b := w.TakeBatch()
	if !b.First.Equal(time.Unix(1000, 0)) || !b.PodsOnly() || len(b.Pods) != 3 || !b.Pods["a/p1"] || !b.Pods["a/p2"] || !b.Pods["b/p3"] {
		t.Fatalf("batch = %+v, want first event at 1000 s and pods a/p1, a/p2, b/p3 only", b)
	}
	if b := w.TakeBatch(); !b.Empty() {
		t.Fatalf("batch not reset: %+v", b)
	}

	w.record(pod("a", "p1"), "update")
	w.record(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s"}}, "delete")
	if b := w.TakeBatch(); b.PodsOnly() || !b.Kinds["Service"] || !b.First.Equal(clock) {
		t.Fatalf("pod + service batch = %+v, want not pods-only, first event %v", b, clock)
	}

	for i := range MaxBatchPods + 1 {
		w.record(pod("a", "p"+string(rune('a'+i%26))+time.Duration(i).String()), "add")
	}
	if b := w.TakeBatch(); !b.Overflow || b.PodsOnly() || b.Pods != nil {
		t.Fatalf("batch of %d pods: overflow %v, pods-only %v, %d keys", MaxBatchPods+1, b.Overflow, b.PodsOnly(), len(b.Pods))
	}

	if n := testutil.ToFloat64(w.events.WithLabelValues("Pod", "add")); n != MaxBatchPods+2 {
		t.Errorf("Pod add events = %v, want %d", n, MaxBatchPods+2)
	}
	if n := testutil.ToFloat64(w.events.WithLabelValues("Service", "delete")); n != 1 {
		t.Errorf("Service delete events = %v, want 1", n)
	}
}
