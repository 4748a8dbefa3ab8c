package ca

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func rootCM(namespace, data string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RootConfigMapName, Namespace: namespace, Labels: labels},
		Data:       map[string]string{RootConfigMapKey: data},
	}
}

func TestDecideRoot(t *testing.T) {
	const root = "ROOT"
	terminating := ns("t")
	terminating.Status.Phase = corev1.NamespaceTerminating
	deleting := ns("d")
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	ok := map[string]string{rootConfigMapLabel: "true"}
	tests := []struct {
		name     string
		ns       *corev1.Namespace
		existing *corev1.ConfigMap
		want     rootAction
	}{
		{"missing", ns("a"), nil, actionCreate},
		{"current", ns("a"), rootCM("a", root, ok), actionNone},
		{"stale root", ns("a"), rootCM("a", "OLD", ok), actionUpdate},
		{"label removed", ns("a"), rootCM("a", root, nil), actionUpdate},
		{"terminating namespace", terminating, nil, actionNone},
		{"deleted namespace", deleting, nil, actionNone},
		{"no namespace", nil, nil, actionNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decideRoot(tt.ns, tt.existing, root); got != tt.want {
				t.Fatalf("decideRoot = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(ns("a"), ns("b"), ns("c"), rootCM("b", "OLD", nil),
		rootCM("c", "ROOT", map[string]string{rootConfigMapLabel: "true"}))
	leader := false
	p := NewRootPublisher(client, []byte("ROOT"), func() bool { return leader }, 0, zap.NewNop())

	if err := p.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countWrites(client); n != 0 {
		t.Fatalf("not the leader, but %d writes", n)
	}

	leader = true
	if err := p.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		cm, err := client.CoreV1().ConfigMaps(n).Get(ctx, RootConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("namespace %s: %v", n, err)
		}
		if cm.Data[RootConfigMapKey] != "ROOT" || cm.Labels[rootConfigMapLabel] != "true" {
			t.Fatalf("namespace %s: configmap %v %v", n, cm.Data, cm.Labels)
		}
	}
	if n := countWrites(client); n != 2 {
		t.Fatalf("writes = %d, want 2 (create a, update b; c was current)", n)
	}
	// Level-based: a second pass changes nothing.
	client.ClearActions()
	if err := p.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countWrites(client); n != 0 {
		t.Fatalf("second pass wrote %d times, want 0", n)
	}
}

func countWrites(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetResource().Resource == "configmaps" && (a.GetVerb() == "create" || a.GetVerb() == "update") {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds; the test binary's timeout bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRootPublisherRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	client := fake.NewClientset(ns("a"), ns("b"))
	p := NewRootPublisher(client, []byte("ROOT"), nil, time.Hour, zap.NewNop())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	has := func(n string) func() bool {
		return func() bool {
			cm, err := client.CoreV1().ConfigMaps(n).Get(ctx, RootConfigMapName, metav1.GetOptions{})
			return err == nil && cm.Data[RootConfigMapKey] == "ROOT"
		}
	}
	waitFor(t, "configmap in a", has("a"))
	waitFor(t, "configmap in b", has("b"))

	// A new namespace gets one.
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns("new"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "configmap in new namespace", has("new"))

	// A tampered configmap is repaired.
	if _, err := client.CoreV1().ConfigMaps("a").Update(ctx, rootCM("a", "EVIL", nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tampered configmap repaired", has("a"))

	// A deleted configmap is recreated.
	if err := client.CoreV1().ConfigMaps("b").Delete(ctx, RootConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted configmap recreated", has("b"))

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
