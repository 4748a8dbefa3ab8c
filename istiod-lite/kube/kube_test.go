package kube

import (
	"context"
	"os"
	"reflect"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiolisters "istio.io/client-go/pkg/listers/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
)

func TestMain(m *testing.M) {
	// istio.io/client-go's fake clientset does not declare that it lacks
	// watch-list support, so its informers would wait for an initial-events
	// bookmark forever; list+watch as with older API servers instead.
	if err := os.Setenv("KUBE_FEATURE_WatchListClient", "false"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m)
}

func yes() *bool { b := true; return &b }

func fullPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "p", Namespace: "ns", ResourceVersion: "1",
			Labels:        map[string]string{"app": "a"},
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{
				{Kind: "Other", Name: "x"},
				{Kind: "ReplicaSet", Name: "rs", Controller: yes()},
			},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "sa", NodeName: "node", HostNetwork: true,
			Containers: []corev1.Container{{
				Name: "c", Image: "img", Args: []string{"--big"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env:   []corev1.EnvVar{{Name: "A", Value: "B"}},
			}},
			Volumes: []corev1.Volume{{Name: "v"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}},
			HostIP: "192.168.0.1",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, Message: "ok"},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c"}},
		},
	}
}

func TestTransformPod(t *testing.T) {
	got, err := Transform(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "p", Namespace: "ns", ResourceVersion: "1",
			Labels:          map[string]string{"app": "a"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Controller: yes()}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "sa", NodeName: "node", HostNetwork: true,
			Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Transform(pod) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestTransformOthers(t *testing.T) {
	meta := func(ann map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "x", Annotations: ann, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}}
	}
	ann := map[string]string{"istio.io/dry-run": "true", "other": "y"}
	tests := []struct {
		name    string
		obj     any
		wantAnn map[string]string
	}{
		{"policy keeps dry-run only", &securityv1.AuthorizationPolicy{ObjectMeta: meta(ann)}, map[string]string{"istio.io/dry-run": "true"}},
		{"peer authentication drops all", &securityv1.PeerAuthentication{ObjectMeta: meta(ann)}, nil},
		{"namespace drops all", &corev1.Namespace{ObjectMeta: meta(ann)}, nil},
		{"service drops all", &corev1.Service{ObjectMeta: meta(ann)}, nil},
		{"gateway drops all", &gatewayv1.Gateway{ObjectMeta: meta(ann)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Transform(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			m := got.(metav1.Object)
			if len(m.GetManagedFields()) != 0 {
				t.Errorf("managedFields kept")
			}
			if !reflect.DeepEqual(m.GetAnnotations(), tt.wantAnn) {
				t.Errorf("annotations = %v, want %v", m.GetAnnotations(), tt.wantAnn)
			}
		})
	}
	// Unknown objects pass through untouched.
	cm := &corev1.ConfigMap{ObjectMeta: meta(ann)}
	if got, _ := Transform(cm); got != cm || len(cm.ManagedFields) != 1 {
		t.Errorf("unknown type was modified")
	}
}

func TestChanged(t *testing.T) {
	pod := func(mut func(*corev1.Pod)) *corev1.Pod {
		p := fullPod()
		mut(p)
		return p
	}
	ap := func(gen int64, rv string, ann map[string]string) *securityv1.AuthorizationPolicy {
		return &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "a", Generation: gen, ResourceVersion: rv, Annotations: ann}}
	}
	tests := []struct {
		name     string
		old, new any
		want     bool
	}{
		{"pod resync", fullPod(), fullPod(), false},
		{"pod irrelevant status", fullPod(), pod(func(p *corev1.Pod) { p.ResourceVersion = "2"; p.Status.HostIP = "x" }), false},
		{"pod ready flips", fullPod(), pod(func(p *corev1.Pod) { p.Status.Conditions[1].Status = corev1.ConditionFalse }), true},
		{"pod new IP", fullPod(), pod(func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.2"}} }), true},
		{"pod label", fullPod(), pod(func(p *corev1.Pod) { p.Labels["istio.io/dataplane-mode"] = "none" }), true},
		{"policy status only", ap(1, "1", nil), ap(1, "2", nil), false},
		{"policy spec", ap(1, "1", nil), ap(2, "2", nil), true},
		{"policy dry-run", ap(1, "1", nil), ap(1, "2", map[string]string{"istio.io/dry-run": "true"}), true},
		{"namespace label", &corev1.Namespace{}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}}}, true},
		{"unknown type by resourceVersion", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1"}}, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "2"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Changed(tt.old, tt.new); got != tt.want {
				t.Errorf("Changed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	idx := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return i
	}
	l := Listers{
		Namespaces: corelisters.NewNamespaceLister(idx(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Labels: map[string]string{"istio.io/dataplane-mode": "ambient"}}})),
		Pods:       corelisters.NewPodLister(idx(fullPod())),
		Services:   corelisters.NewServiceLister(idx(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1"}})),
		AuthorizationPolicies: istiolisters.NewAuthorizationPolicyLister(idx(&securityv1.AuthorizationPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: "ns"},
			Spec:       securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY},
		})),
		PeerAuthentications: istiolisters.NewPeerAuthenticationLister(idx()),
		Gateways:            gwlisters.NewGatewayLister(idx(&gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns"}, Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio-waypoint"}})),
	}
	in, err := Snapshot(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Namespaces) != 1 || len(in.Pods) != 1 || len(in.Services) != 1 || len(in.AuthorizationPolicies) != 1 || len(in.PeerAuthentications) != 0 || len(in.Gateways) != 1 {
		t.Fatalf("Snapshot = %+v", in)
	}
	if p := in.Pods[0]; p.Name != "p" || len(p.IPs) != 1 || !p.Ready || p.ContainerPorts["http"] != 8080 {
		t.Errorf("pod = %+v", p)
	}
	if in.Gateways[0].ClassName != "istio-waypoint" || in.AuthorizationPolicies[0].Spec.GetAction() != securityv1beta1.AuthorizationPolicy_DENY {
		t.Errorf("gateway/policy not converted: %+v %+v", in.Gateways[0], in.AuthorizationPolicies[0])
	}
}

// noWatchList makes the reflector list then watch (the fake watch sends no
// initial-events bookmark).
type noWatchList struct{ *cache.ListWatch }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// TestWatcher drives a real shared informer from a fake watch and checks
// that changes reach notify on the watcher's goroutine, and that a
// status-only update does not.
func TestWatcher(t *testing.T) {
	fw := watch.NewFake()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil },
	}
	inf := cache.NewSharedIndexInformer(noWatchList{lw}, &corev1.Pod{}, 0, cache.Indexers{})
	if err := inf.SetTransform(Transform); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(zap.NewNop(), inf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notified := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx.Done()) }()
	runDone := make(chan struct{})
	go func() { defer close(runDone); w.Run(ctx, func() { notified <- struct{}{} }) }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}

	p := fullPod()
	fw.Add(p.DeepCopy())
	<-notified // add reaches notify

	// A status-only change is filtered; a Ready flip is not. Events are
	// delivered in order, so once the Ready flip is seen, the earlier
	// update was processed and must not have notified.
	p2 := p.DeepCopy()
	p2.ResourceVersion = "2"
	p2.Status.HostIP = "10.9.9.9"
	// Each event carries its own copy: the informer's transform trims the
	// object it is handed in place, on its own goroutine.
	p3 := p2.DeepCopy()
	fw.Modify(p2)
	p3.ResourceVersion = "3"
	p3.Status.Conditions[1].Status = corev1.ConditionFalse
	fw.Modify(p3)
	<-notified
	select {
	case <-notified:
		t.Errorf("status-only update notified")
	default:
	}
	cached, _, _ := inf.GetStore().GetByKey("ns/p")
	if c := cached.(*corev1.Pod); len(c.Spec.Containers[0].Env) != 0 || c.Status.HostIP != "" {
		t.Errorf("cached pod not trimmed: %+v", c)
	}
	cancel()
	<-done
	<-runDone
}
