package kube

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

	mu     sync.Mutex
	batch  Batch                  // events since the last TakeBatch
	events *prometheus.CounterVec // ambient_informer_events_total{kind,event}
	now    func() time.Time
}

// MaxBatchPods bounds the pod keys a Batch lists; past it the batch is
// marked Overflow (the caller rebuilds everything anyway).
const MaxBatchPods = 1000

// Batch describes the model-changing events since the previous TakeBatch.
type Batch struct {
	// First is when the first event arrived; zero for an empty batch.
	First time.Time
	// Kinds are the kinds that changed (kindOf names).
	Kinds map[string]bool
	// Pods are the "<namespace>/<name>" keys of the changed pods, unless
	// Overflow.
	Pods     map[string]bool
	Overflow bool
}

// Empty reports whether no event arrived.
func (b Batch) Empty() bool { return len(b.Kinds) == 0 }

// PodsOnly reports whether the batch holds only pod changes, all listed:
// then only those pods' workloads can differ from the previous build.
func (b Batch) PodsOnly() bool { return len(b.Kinds) == 1 && b.Kinds["Pod"] && !b.Overflow }

// NewWatcher registers change handlers on informers (typically
// Informers.ModelInformers()). Register before starting the informers so the
// initial list also marks the model dirty.
func NewWatcher(log *zap.Logger, informers ...cache.SharedIndexInformer) (*Watcher, error) {
	w := &Watcher{log: log, dirty: make(chan struct{}, 1), now: time.Now,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ambient_informer_events_total",
			Help: "Informer events that changed a model input, by kind and event (add, update, delete).",
		}, []string{"kind", "event"}),
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { w.record(obj, "add") },
		UpdateFunc: func(oldObj, newObj any) {
			if Changed(oldObj, newObj) {
				w.record(newObj, "update")
			}
		},
		DeleteFunc: func(obj any) { w.record(obj, "delete") },
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

// Collectors are the watcher's metrics, for the caller to register.
func (w *Watcher) Collectors() []prometheus.Collector { return []prometheus.Collector{w.events} }

// TakeBatch returns the events since the previous call and starts a new
// batch. The rebuild calls it before reading the caches, so the caches it
// reads hold at least every change of the batch (later ones too, which the
// next batch lists again).
func (w *Watcher) TakeBatch() Batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.batch
	w.batch = Batch{}
	return b
}

// record adds an informer event to the batch and marks the model dirty.
func (w *Watcher) record(obj any, event string) {
	kind := kindOf(obj)
	w.events.WithLabelValues(kind, event).Inc()
	w.mu.Lock()
	b := &w.batch
	if b.Kinds == nil {
		b.First, b.Kinds = w.now(), map[string]bool{}
	}
	b.Kinds[kind] = true
	if kind == "Pod" && !b.Overflow {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err != nil || len(b.Pods) >= MaxBatchPods {
			b.Overflow, b.Pods = true, nil
		} else {
			if b.Pods == nil {
				b.Pods = map[string]bool{}
			}
			b.Pods[key] = true
		}
	}
	w.mu.Unlock()
	w.mark()
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

// kindOf names an informer object's kind for metric labels.
func kindOf(obj any) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch obj.(type) {
	case *corev1.Pod:
		return "Pod"
	case *corev1.Service:
		return "Service"
	case *corev1.Namespace:
		return "Namespace"
	case *gatewayv1.Gateway:
		return "Gateway"
	case *gatewayv1.HTTPRoute:
		return "HTTPRoute"
	case *gatewayv1.GRPCRoute:
		return "GRPCRoute"
	case *securityv1.AuthorizationPolicy:
		return "AuthorizationPolicy"
	case *securityv1.PeerAuthentication:
		return "PeerAuthentication"
	}
	return "other"
}
