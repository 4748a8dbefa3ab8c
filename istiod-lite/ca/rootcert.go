package ca

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Root ConfigMap published in every namespace, as Istio names it.
const (
	RootConfigMapName = "istio-ca-root-cert"
	RootConfigMapKey  = "root-cert.pem"
	// rootConfigMapLabel is Istio's label on the root ConfigMap.
	rootConfigMapLabel = "istio.io/config"
)

// RootPublisher keeps ConfigMap istio-ca-root-cert (key root-cert.pem) equal
// to the CA's roots in every namespace. It is level-based: each namespace is
// reconciled on namespace events and on every resync, whatever happened
// before, and only while IsLeader says so.
type RootPublisher struct {
	client   kubernetes.Interface
	isLeader func() bool
	resync   time.Duration
	log      *zap.Logger

	mu      sync.Mutex
	rootPEM string
	queue   workqueue.TypedRateLimitingInterface[string] // created by Run
	nsStore cache.Store                                  // set by Run
}

// NewRootPublisher builds a publisher of rootPEM. isLeader is asked before
// every write (nil means always); resync is the period of the full pass that
// repairs edited or deleted ConfigMaps (0 means 10 minutes).
func NewRootPublisher(client kubernetes.Interface, rootPEM []byte, isLeader func() bool, resync time.Duration, log *zap.Logger) *RootPublisher {
	if isLeader == nil {
		isLeader = func() bool { return true }
	}
	if resync <= 0 {
		resync = 10 * time.Minute
	}
	return &RootPublisher{
		client: client, rootPEM: string(rootPEM), isLeader: isLeader, resync: resync, log: log,
	}
}

// SetRoots publishes new roots (the cacerts Secret changed, e.g. the old and
// new roots of a rotation): every namespace is reconciled again.
func (p *RootPublisher) SetRoots(rootPEM []byte) {
	p.mu.Lock()
	changed := p.rootPEM != string(rootPEM)
	p.rootPEM = string(rootPEM)
	q, store := p.queue, p.nsStore
	p.mu.Unlock()
	if !changed || q == nil || store == nil {
		return
	}
	p.log.Info("publishing new root certificates", zap.Int("namespaces", len(store.ListKeys())))
	for _, ns := range store.ListKeys() {
		q.Add(ns)
	}
}

func (p *RootPublisher) roots() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rootPEM
}

// Run watches namespaces and ConfigMaps named istio-ca-root-cert and
// reconciles until ctx is done. Call it once.
func (p *RootPublisher) Run(ctx context.Context) error {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "root-cert-publisher"})
	defer queue.ShutDown()
	nsFactory := informers.NewSharedInformerFactory(p.client, p.resync)
	nsInf := nsFactory.Core().V1().Namespaces().Informer()
	p.mu.Lock()
	p.queue, p.nsStore = queue, nsInf.GetStore()
	p.mu.Unlock()
	cmFactory := informers.NewSharedInformerFactoryWithOptions(p.client, p.resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "metadata.name=" + RootConfigMapName
		}))
	cmInf := cmFactory.Core().V1().ConfigMaps().Informer()

	enqueueNS := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok {
			queue.Add(ns.Name)
		}
	}
	enqueueCM := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == RootConfigMapName {
			queue.Add(cm.Namespace)
		}
	}
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueNS, UpdateFunc: func(_, n any) { enqueueNS(n) },
	}); err != nil {
		return fmt.Errorf("root publisher: namespace handler: %w", err)
	}
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, n any) { enqueueCM(n) }, DeleteFunc: enqueueCM,
	}); err != nil {
		return fmt.Errorf("root publisher: configmap handler: %w", err)
	}
	nsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	defer nsFactory.Shutdown()
	defer cmFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nsInf.HasSynced, cmInf.HasSynced) {
		return ctx.Err()
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		for p.processNext(ctx, queue) {
		}
	}, time.Second)
	<-ctx.Done()
	return nil
}

func (p *RootPublisher) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	ns, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(ns)
	if err := p.Reconcile(ctx, ns); err != nil {
		p.log.Warn("root cert configmap not written; retrying", zap.String("namespace", ns), zap.Error(err))
		queue.AddRateLimited(ns)
		return true
	}
	queue.Forget(ns)
	return true
}

// rootAction is what Reconcile does to one namespace.
type rootAction int

const (
	actionNone rootAction = iota
	actionCreate
	actionUpdate
)

// decideRoot is the pure decision of Reconcile.
func decideRoot(ns *corev1.Namespace, existing *corev1.ConfigMap, rootPEM string) rootAction {
	if ns == nil || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return actionNone
	}
	if existing == nil {
		return actionCreate
	}
	if existing.Data[RootConfigMapKey] != rootPEM || existing.Labels[rootConfigMapLabel] != "true" {
		return actionUpdate
	}
	return actionNone
}

// Reconcile makes the root ConfigMap of one namespace current. It writes
// nothing unless the publisher is the leader.
func (p *RootPublisher) Reconcile(ctx context.Context, namespace string) error {
	if !p.isLeader() {
		return nil
	}
	ns, err := p.client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get namespace %s: %w", namespace, err)
	}
	cms := p.client.CoreV1().ConfigMaps(namespace)
	existing, err := cms.Get(ctx, RootConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		existing, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("get configmap %s/%s: %w", namespace, RootConfigMapName, err)
	}
	rootPEM := p.roots()
	switch decideRoot(ns, existing, rootPEM) {
	case actionCreate:
		_, err = cms.Create(ctx, p.desired(namespace, rootPEM), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("configmap %s/%s created concurrently; will look again: %w", namespace, RootConfigMapName, err)
		}
		if err == nil {
			p.log.Info("root cert configmap created", zap.String("namespace", namespace))
		}
	case actionUpdate:
		upd := existing.DeepCopy()
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[rootConfigMapLabel] = "true"
		if upd.Data == nil {
			upd.Data = map[string]string{}
		}
		upd.Data[RootConfigMapKey] = rootPEM
		_, err = cms.Update(ctx, upd, metav1.UpdateOptions{})
		if err == nil {
			p.log.Info("root cert configmap updated", zap.String("namespace", namespace))
		}
	}
	if err != nil {
		return fmt.Errorf("write configmap %s/%s: %w", namespace, RootConfigMapName, err)
	}
	return nil
}

// ReconcileAll reconciles every namespace once, e.g. right after winning the
// leader election.
func (p *RootPublisher) ReconcileAll(ctx context.Context) error {
	list, err := p.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var firstErr error
	for _, ns := range list.Items {
		if err := p.Reconcile(ctx, ns.Name); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (p *RootPublisher) desired(ns, rootPEM string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RootConfigMapName, Namespace: ns, Labels: map[string]string{rootConfigMapLabel: "true"}},
		Data:       map[string]string{RootConfigMapKey: rootPEM},
	}
}
