package waypointctl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
)

// workers is the number of reconcile goroutines; waypoints are few.
const workers = 2

// errRequeue asks for a rate-limited retry without logging an error: the
// cache was stale (create found the object) or a write lost a race.
var errRequeue = errors.New("stale cache or write conflict")

// Controller deploys waypoints and writes their status. Run it only on the
// leader (pkg/kube.LeaderElector); it can be run again after Run returns.
type Controller struct {
	kube kubernetes.Interface
	gw   gatewayclient.Interface
	cfg  Config
	log  *zap.Logger
	m    *metrics
	now  func() time.Time
}

// New checks cfg (after WithDefaults) and registers the metrics on reg
// (nil: not registered).
func New(kube kubernetes.Interface, gw gatewayclient.Interface, cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Controller, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("waypoint controller config: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Controller{kube: kube, gw: gw, cfg: cfg, log: log, m: m, now: time.Now}, nil
}

// item is a unit of work: the GatewayClass, or one Gateway.
type item struct {
	class bool
	gw    types.NamespacedName
}

var classItem = item{class: true}

// caches are one Run's informers and listers.
type caches struct {
	kf          informers.SharedInformerFactory
	gf          gwinformers.SharedInformerFactory
	gateways    gwlisters.GatewayLister
	classes     gwlisters.GatewayClassLister
	deployments appslisters.DeploymentLister
	services    corelisters.ServiceLister
	sas         corelisters.ServiceAccountLister
	synced      []cache.InformerSynced
}

// newCaches builds the informers (Deployments, Services and
// ServiceAccounts only with our gateway.istio.io/managed label) and routes
// their events to enqueue.
func (c *Controller) newCaches(enqueue func(item)) (*caches, error) {
	kf := informers.NewSharedInformerFactoryWithOptions(c.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = LabelManaged + "=" + ManagedValue
	}))
	gf := gwinformers.NewSharedInformerFactory(c.gw, 0)
	gws, gcs := gf.Gateway().V1().Gateways(), gf.Gateway().V1().GatewayClasses()
	deps, svcs, sas := kf.Apps().V1().Deployments(), kf.Core().V1().Services(), kf.Core().V1().ServiceAccounts()

	onGateway := func(obj any) {
		if g, ok := obj.(*gatewayv1.Gateway); ok && g.Spec.GatewayClassName == ClassName {
			enqueue(item{gw: types.NamespacedName{Namespace: g.Namespace, Name: g.Name}})
		}
	}
	onClass := func(obj any) {
		if o, ok := tombstone(obj); ok && o.GetName() == ClassName {
			enqueue(classItem)
		}
	}
	onChild := func(obj any) {
		o, ok := tombstone(obj)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "Gateway" {
			enqueue(item{gw: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
		}
	}
	regs := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{gws.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: onGateway,
			UpdateFunc: func(o, n any) {
				onGateway(o) // class changed away: reconcile reports it ignored
				onGateway(n)
			},
		}},
		{gcs.Informer(), handlerFor(onClass)},
		{deps.Informer(), handlerFor(onChild)},
		{svcs.Informer(), handlerFor(onChild)},
		{sas.Informer(), handlerFor(onChild)},
	}
	cs := &caches{
		kf: kf, gf: gf,
		gateways: gws.Lister(), classes: gcs.Lister(),
		deployments: deps.Lister(), services: svcs.Lister(), sas: sas.Lister(),
	}
	for _, r := range regs {
		reg, err := r.inf.AddEventHandler(r.h)
		if err != nil {
			return nil, fmt.Errorf("waypoint controller event handler: %w", err)
		}
		cs.synced = append(cs.synced, reg.HasSynced)
	}
	return cs, nil
}

func handlerFor(f func(any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n any) { f(n) }, DeleteFunc: f}
}

func tombstone(obj any) (metav1.Object, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, err := metaAccessor(obj)
	return o, err == nil
}

func metaAccessor(obj any) (metav1.Object, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T is not a Kubernetes object", obj)
	}
	return o, nil
}

// start runs the informers until ctx ends and waits for their caches.
func (cs *caches) start(ctx context.Context) error {
	cs.kf.Start(ctx.Done())
	cs.gf.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), cs.synced...) {
		return fmt.Errorf("waypoint controller caches did not sync (are the Gateway API CRDs installed?): %w", context.Cause(ctx))
	}
	return nil
}

// shutdown waits for the informer goroutines; ctx must have ended.
func (cs *caches) shutdown() {
	cs.kf.Shutdown()
	cs.gf.Shutdown()
}

// Run reconciles until ctx ends. It returns an error only when the caches
// cannot sync before ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[item](),
		workqueue.TypedRateLimitingQueueConfig[item]{Name: "waypointctl"})
	defer queue.ShutDown()
	cs, err := c.newCaches(queue.Add)
	if err != nil {
		cancel()
		return err
	}
	defer cs.shutdown()
	defer cancel()
	if err := cs.start(ctx); err != nil {
		return err
	}
	c.log.Info("waypoint controller started", zap.String("image", c.cfg.Image), zap.String("xds_address", c.cfg.XDSAddress))
	queue.Add(classItem)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNext(ctx, cs, queue) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	c.log.Info("waypoint controller stopped")
	return nil
}

func (c *Controller) processNext(ctx context.Context, cs *caches, q workqueue.TypedRateLimitingInterface[item]) bool {
	it, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(it)
	_, err := c.reconcile(ctx, cs, it)
	switch {
	case err == nil:
		q.Forget(it)
	case errors.Is(err, errRequeue):
		q.AddRateLimited(it)
	default:
		if ctx.Err() == nil {
			c.log.Error("waypoint reconcile failed", zap.String("gateway", it.gw.String()), zap.Bool("gateway_class", it.class), zap.Error(err))
		}
		q.AddRateLimited(it)
	}
	return true
}

// reconcile counts and returns the result, and an error to retry.
func (c *Controller) reconcile(ctx context.Context, cs *caches, it item) (string, error) {
	var (
		result string
		err    error
	)
	if it.class {
		result, err = c.reconcileClass(ctx, cs)
	} else {
		result, err = c.reconcileGateway(ctx, cs, it.gw)
	}
	switch {
	case errors.Is(err, errRequeue):
		result = resultRequeue
	case err != nil:
		result = resultError
	}
	c.m.reconciles.WithLabelValues(result).Inc()
	return result, err
}

func (c *Controller) reconcileClass(ctx context.Context, cs *caches) (string, error) {
	gc, err := cs.classes.Get(ClassName)
	if apierrors.IsNotFound(err) {
		gc, err = c.gw.GatewayV1().GatewayClasses().Create(ctx, DesiredGatewayClass(), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return "", errRequeue
		}
		if err != nil {
			return "", fmt.Errorf("create GatewayClass %s: %w", ClassName, err)
		}
		c.log.Info("gateway class created", zap.String("gateway_class", ClassName))
	} else if err != nil {
		return "", fmt.Errorf("get GatewayClass %s: %w", ClassName, err)
	}
	if gc.Spec.ControllerName != ControllerName {
		c.log.Info("gateway class has another controller, leaving it alone",
			zap.String("gateway_class", ClassName), zap.String("controller", string(gc.Spec.ControllerName)))
		return resultIgnored, nil
	}
	conds := MergeConditions(gc.Status.Conditions, ClassConditions(gc), metav1.NewTime(c.now()))
	if ClassStatusEqual(gc.Status.Conditions, conds) {
		return resultSuccess, nil
	}
	u := gc.DeepCopy()
	u.Status.Conditions = conds
	if _, err := c.gw.GatewayV1().GatewayClasses().UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return "", errRequeue
		}
		return "", fmt.Errorf("update GatewayClass %s status: %w", ClassName, err)
	}
	return resultSuccess, nil
}

func (c *Controller) reconcileGateway(ctx context.Context, cs *caches, key types.NamespacedName) (string, error) {
	gw, err := cs.gateways.Gateways(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return resultIgnored, nil // children go with it: owner references + garbage collector
	}
	if err != nil {
		return "", fmt.Errorf("get Gateway %s: %w", key, err)
	}
	if gw.Spec.GatewayClassName != ClassName {
		return resultIgnored, nil
	}
	if gc, err := cs.classes.Get(ClassName); err == nil && gc.Spec.ControllerName != ControllerName {
		return resultIgnored, nil
	}

	v := Validate(gw)
	var obs Observed
	if v.Accepted {
		if obs, err = c.applyChildren(ctx, cs, gw); err != nil {
			return "", err
		}
	}
	next := MergeStatus(gw.Status, ComputeStatus(gw, v, obs, c.cfg.ClusterDomain), metav1.NewTime(c.now()))
	if !StatusEqual(gw.Status, next) {
		u := gw.DeepCopy()
		u.Status = next
		if _, err := c.gw.GatewayV1().Gateways(gw.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return "", errRequeue
			}
			return "", fmt.Errorf("update Gateway %s status: %w", key, err)
		}
		c.log.Info("gateway status updated", zap.String("gateway", key.String()),
			zap.String("accepted", string(next.Conditions[0].Status)), zap.String("programmed", string(next.Conditions[1].Status)),
			zap.String("reason", next.Conditions[1].Reason))
	}
	if !v.Accepted {
		return resultInvalid, nil
	}
	return resultSuccess, nil
}

// applyChildren creates or updates the ServiceAccount, Deployment and
// Service of gw, and returns them as they now are.
func (c *Controller) applyChildren(ctx context.Context, cs *caches, gw *gatewayv1.Gateway) (Observed, error) {
	wantSA, wantDep, wantSvc := Desired(gw, c.cfg)
	var obs Observed
	ns := gw.Namespace

	sas := c.kube.CoreV1().ServiceAccounts(ns)
	_, conflict, err := apply(ctx, c, gw, "ServiceAccount", wantSA, ops[*corev1.ServiceAccount]{
		get: cs.sas.ServiceAccounts(ns).Get, create: sas.Create, update: sas.Update, merge: MergeServiceAccount,
	})
	if err != nil {
		return obs, err
	}
	obs.Conflict = conflict

	deps := c.kube.AppsV1().Deployments(ns)
	dep, conflict, err := apply(ctx, c, gw, "Deployment", wantDep, ops[*appsv1.Deployment]{
		get: cs.deployments.Deployments(ns).Get, create: deps.Create, update: deps.Update, merge: MergeDeployment,
	})
	if err != nil {
		return obs, err
	}
	obs.Deployment = dep
	if obs.Conflict == "" {
		obs.Conflict = conflict
	}

	svcs := c.kube.CoreV1().Services(ns)
	svc, conflict, err := apply(ctx, c, gw, "Service", wantSvc, ops[*corev1.Service]{
		get: cs.services.Services(ns).Get, create: svcs.Create, update: svcs.Update, merge: MergeService,
	})
	if err != nil {
		return obs, err
	}
	obs.Service = svc
	if obs.Conflict == "" {
		obs.Conflict = conflict
	}
	return obs, nil
}

// ops are the reads (from the cache) and writes of one kind of child.
type ops[T metav1.Object] struct {
	get    func(name string) (T, error)
	create func(context.Context, T, metav1.CreateOptions) (T, error)
	update func(context.Context, T, metav1.UpdateOptions) (T, error)
	merge  func(live, want T) (T, bool)
}

// apply makes the live object match want in the fields we own. It returns
// the object as it now is, or a conflict message (and a nil object) when a
// same-named object is not controlled by gw.
func apply[T metav1.Object](ctx context.Context, c *Controller, gw *gatewayv1.Gateway, kind string, want T, o ops[T]) (T, string, error) {
	var zero T
	ref := want.GetNamespace() + "/" + want.GetName()
	live, err := o.get(want.GetName())
	if apierrors.IsNotFound(err) {
		created, err := o.create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return zero, "", errRequeue
		}
		if err != nil {
			return zero, "", fmt.Errorf("create %s %s: %w", kind, ref, err)
		}
		c.log.Info("waypoint object created", zap.String("kind", kind), zap.String("name", ref))
		return created, "", nil
	}
	if err != nil {
		return zero, "", fmt.Errorf("get %s %s: %w", kind, ref, err)
	}
	if !ControlledBy(live, gw) {
		return zero, conflictMessage(kind, live, gw), nil
	}
	merged, diff := o.merge(live, want)
	if !diff {
		return live, "", nil
	}
	updated, err := o.update(ctx, merged, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return zero, "", errRequeue
	}
	if err != nil {
		return zero, "", fmt.Errorf("update %s %s: %w", kind, ref, err)
	}
	c.log.Info("waypoint object updated", zap.String("kind", kind), zap.String("name", ref))
	return updated, "", nil
}
