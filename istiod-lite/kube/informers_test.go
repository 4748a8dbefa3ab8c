package kube

import (
	"context"
	"testing"

	"go.uber.org/zap"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
)

// TestInformersEndToEnd wires fake clientsets → informers → Watcher →
// Snapshot → model.Build, the path the app uses.
func TestInformersEndToEnd(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{model.LabelDataplaneMode: "ambient"}}}
	pod := fullPod()
	pod.Namespace = "app"
	pod.Spec.HostNetwork = false
	clients := Clients{
		Kube: kubefake.NewClientset(ns, pod),
		Istio: istiofake.NewSimpleClientset(&securityv1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: "app"},
		}),
		Gateway: gwfake.NewSimpleClientset(&gatewayv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "app"},
			Spec:       gatewayv1.GatewaySpec{GatewayClassName: model.WaypointGatewayClass},
		}),
	}
	inf, err := NewInformers(clients, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(zap.NewNop(), inf.ModelInformers()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer inf.Shutdown()
	defer cancel()
	inf.Start(ctx)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	builds := make(chan *model.Snapshot, 1)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		w.Run(ctx, func() {
			in, err := Snapshot(inf.Listers())
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case builds <- model.Build(in, model.Config{}):
			default:
			}
		})
	}()
	s := <-builds
	uid := model.WorkloadUID("Kubernetes", "app", "p")
	for s.Workloads[uid] == nil || len(s.Policies) == 0 {
		s = <-builds // the initial adds may arrive in several batches
	}
	if got := s.Workloads[uid].GetTunnelProtocol().String(); got != "HBONE" {
		t.Errorf("tunnel protocol = %s, want HBONE", got)
	}
	if s.Policies["app/deny"] == nil {
		t.Errorf("policy missing: %v", s.Policies)
	}
	cancel()
	<-runDone
}
