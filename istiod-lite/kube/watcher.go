package kube

import (
	"context"
	"fmt"
	"reflect"

	"go.uber.org/zap"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
)

// Watcher funnels informer events into one goroutine. Events only mark
// the model dirty (a one-slot channel), so bursts coalesce: Run calls
// notify once per batch, never concurrently. Debouncing is left to notify's
// owner.
type Watcher struct {
	log   *zap.Logger
	dirty chan struct{}
}

// NewWatcher registers change handlers on informers (typically
// Informers.ModelInformers()). Register before starting the informers so the
// initial list also marks the model dirty.
func NewWatcher(log *zap.Logger, informers ...cache.SharedIndexInformer) (*Watcher, error) {
	w := &Watcher{log: log, dirty: make(chan struct{}, 1)}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.mark() },
		UpdateFunc: func(oldObj, newObj any) {
			if Changed(oldObj, newObj) {
				w.mark()
			}
		},
		DeleteFunc: func(any) { w.mark() },
	}
	for i, inf := range informers {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("add event handler to informer %d: %w", i, err)
		}
	}
	return w, nil
}

// ModelInformers are the informers whose changes affect the model.
func (i *Informers) ModelInformers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{i.Namespaces, i.Pods, i.Services, i.AuthorizationPolicies, i.PeerAuthentications, i.Gateways}
}

func (w *Watcher) mark() {
	select {
	case w.dirty <- struct{}{}:
	default: // already dirty
	}
}

// Run is the single event goroutine: it calls notify after changes until
// ctx is done. notify typically calls Snapshot, model.Build and pushes the
// Diff to the xDS server.
func (w *Watcher) Run(ctx context.Context, notify func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
			w.log.Debug("mesh inputs changed")
			notify()
		}
	}
}

// Changed reports whether an informer update changes anything the model
// reads, so status-only churn (pod conditions other than Ready, policy
// status written by us) does not trigger rebuilds. Unknown types compare by
// resourceVersion.
func Changed(oldObj, newObj any) bool {
	switch n := newObj.(type) {
	case *corev1.Pod:
		o, ok := oldObj.(*corev1.Pod)
		return !ok || !reflect.DeepEqual(model.FromPod(o), model.FromPod(n))
	case *corev1.Service:
		o, ok := oldObj.(*corev1.Service)
		return !ok || !reflect.DeepEqual(model.FromService(o), model.FromService(n))
	case *corev1.Namespace:
		o, ok := oldObj.(*corev1.Namespace)
		return !ok || !reflect.DeepEqual(model.FromNamespace(o), model.FromNamespace(n))
	case *gatewayv1.Gateway:
		o, ok := oldObj.(*gatewayv1.Gateway)
		return !ok || !reflect.DeepEqual(model.FromGateway(o), model.FromGateway(n))
	case *securityv1.AuthorizationPolicy:
		o, ok := oldObj.(*securityv1.AuthorizationPolicy)
		return !ok || specChanged(&o.ObjectMeta, &n.ObjectMeta) ||
			o.Annotations[model.AnnotationDryRun] != n.Annotations[model.AnnotationDryRun]
	case *securityv1.PeerAuthentication:
		o, ok := oldObj.(*securityv1.PeerAuthentication)
		return !ok || specChanged(&o.ObjectMeta, &n.ObjectMeta)
	}
	om, ok1 := oldObj.(metav1.Object)
	nm, ok2 := newObj.(metav1.Object)
	return !ok1 || !ok2 || om.GetResourceVersion() != nm.GetResourceVersion()
}

// specChanged compares generations (bumped on spec changes, not status)
// and labels.
func specChanged(o, n *metav1.ObjectMeta) bool {
	return o.Generation != n.Generation || o.Generation == 0 && o.ResourceVersion != n.ResourceVersion ||
		!reflect.DeepEqual(o.Labels, n.Labels)
}
