package captureagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ErrNoVeth is returned when a pod address is not routed to a pod interface
// of this node (the pod's sandbox is not set up yet, or is gone, or the CNI
// is not a routed one).
var ErrNoVeth = errors.New("no host-side pod interface")

// DefaultResync is the period of the full reconcile that repairs drift.
const DefaultResync = 30 * time.Second

// Datapath is the part of capture.Objects the agent uses; tests use a fake.
// Interfaces are ifindexes of the node's network namespace.
type Datapath interface {
	Attach(ifindex int) error
	Detach(ifindex int) error
	Enroll(ifindex int, ip netip.Addr) error
	Unenroll(ip netip.Addr) error
	Enrolled() (map[netip.Addr]int, error)
	Attached() ([]int, error)
}

// VethResolver finds the host-side interface of a pod address in the node's
// network namespace. [RouteVeths] does it for routed CNIs.
type VethResolver interface {
	HostVeth(podIP netip.Addr) (ifindex int, err error)
}

// UplinkResolver finds the node's uplink interface. [NodeUplink] is the
// interface holding the node IP, or the default route's.
type UplinkResolver interface {
	Uplink() (ifindex int, err error)
}

// NodeSetup is node state the agent re-asserts at start and on every resync
// (policy routing, the notrack rule). Ensure must be idempotent.
type NodeSetup interface {
	Ensure(ctx context.Context) error
}

// Kube is the part of the Kubernetes API the agent reads: list and watch of
// core/v1 Pods (all namespaces, narrowed by a field selector) and
// Namespaces. *corev1client.Client implements it without linking the
// generated clientsets; tests adapt a fake clientset.
type Kube interface {
	ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	ListNamespaces(ctx context.Context, opts metav1.ListOptions) (*corev1.NamespaceList, error)
	WatchNamespaces(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Options configures [New].
type Options struct {
	// Client watches the node's pods and all namespaces; not used (and may
	// be nil) with Static.
	Client Kube
	// Static replaces the Kubernetes watch by a fixed set of pods and
	// namespaces (local mode: ztunnel --local-config, no cluster).
	Static   *Static
	NodeName string
	Datapath Datapath
	Veths    VethResolver
	Uplink   UplinkResolver
	// NodeSetup is optional.
	NodeSetup NodeSetup
	// Resync is the period of the full reconcile (DefaultResync when zero).
	Resync time.Duration
	Logger *zap.Logger
	// Registry receives the agent's metrics; nil: not registered.
	Registry prometheus.Registerer
}

// CapturedPod is an enrolled pod address, as shown by the admin config_dump.
type CapturedPod struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	IP        netip.Addr `json:"ip"`
	Ifindex   int        `json:"ifindex"`
}

// Status is the agent's view after its last reconcile.
type Status struct {
	Uplink    int           `json:"uplinkIfindex"`
	Attached  []int         `json:"attachedIfindexes"`
	Pods      []CapturedPod `json:"capturedPods"`
	LastError string        `json:"lastError,omitempty"`
}

// Agent keeps the capture datapath in sync with the pods of one node. One
// worker goroutine reconciles; Status may be called from any goroutine.
type Agent struct {
	opts    Options
	log     *zap.Logger
	metrics *metrics
	status  atomic.Pointer[Status]
	ran     atomic.Bool

	// Set by Run.
	pods       listersv1.PodLister
	namespaces listersv1.NamespaceLister
}

// Queue keys: a change, or the periodic resync (which also re-asserts node
// setup and every attachment).
const (
	keyChange = "change"
	keyResync = "resync"
)

// New checks opts and registers the metrics.
func New(opts Options) (*Agent, error) {
	switch {
	case opts.Client == nil && opts.Static == nil:
		return nil, errors.New("capture agent: no Kubernetes client (or static pods)")
	case opts.NodeName == "":
		return nil, errors.New("capture agent: node name is empty (set --node-name, usually from spec.nodeName)")
	case opts.Datapath == nil || opts.Veths == nil || opts.Uplink == nil:
		return nil, errors.New("capture agent: Datapath, Veths and Uplink are required")
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	a := &Agent{opts: opts, log: opts.Logger, metrics: m}
	a.status.Store(&Status{})
	return a, nil
}

// Status returns a copy of the state after the last reconcile.
func (a *Agent) Status() Status {
	s := *a.status.Load()
	s.Attached = slices.Clone(s.Attached)
	s.Pods = slices.Clone(s.Pods)
	return s
}

// Run watches the node's pods and all namespaces and reconciles until ctx is
// done. It leaves the datapath as it is when it returns: capture keeps working
// (and failing closed) while the agent restarts. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("capture agent: Run called twice")
	}
	if a.opts.Static != nil {
		return a.runStatic(ctx)
	}
	podInf, nsInf := a.informers()
	if err := podInf.SetTransform(slimPod); err != nil {
		return fmt.Errorf("capture agent: pod informer: %w", err)
	}
	if err := nsInf.SetTransform(slimNamespace); err != nil {
		return fmt.Errorf("capture agent: namespace informer: %w", err)
	}
	a.pods, a.namespaces = listersv1.NewPodLister(podInf.GetIndexer()), listersv1.NewNamespaceLister(nsInf.GetIndexer())

	queue := newQueue(a.opts.Resync)
	change := func() { queue.Add(keyChange) }
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { change() },
		UpdateFunc: func(o, n any) { podChanged(o, n, change) },
		DeleteFunc: func(any) { change() },
	}); err != nil {
		return fmt.Errorf("capture agent: pod informer: %w", err)
	}
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { change() },
		UpdateFunc: func(o, n any) { namespaceChanged(o, n, change) },
		DeleteFunc: func(any) { change() },
	}); err != nil {
		return fmt.Errorf("capture agent: namespace informer: %w", err)
	}

	// The informers stop when ctx is done; Run waits for them so that none
	// outlives it (as the informer factories' Shutdown did).
	var informers sync.WaitGroup
	defer informers.Wait()
	defer queue.ShutDown()
	informers.Go(func() { podInf.RunWithContext(ctx) })
	informers.Go(func() { nsInf.RunWithContext(ctx) })

	// The uplink first: SYNs from other nodes to pods enrolled by an earlier
	// run are captured again before the caches are warm. Errors are retried
	// by the reconcile.
	if err := a.attachUplink(); err != nil {
		a.log.Warn("uplink attach failed, will retry", zap.Error(err))
	}
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, nsInf.HasSynced) {
		return nil // ctx done
	}
	a.log.Info("capture agent caches synced", zap.String("node", a.opts.NodeName))
	a.loop(ctx, queue)
	return nil
}

// informers are the pod informer (this node's pods, by field selector) and
// the namespace informer, as client-go's informer factories build them for
// Core().V1(): indexed by namespace, no resync of their own (the agent's
// queue has one).
func (a *Agent) informers() (pods, namespaces cache.SharedIndexInformer) {
	node := fields.OneTermEqualSelector("spec.nodeName", a.opts.NodeName).String()
	c := a.opts.Client
	podLW := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = node
			return c.ListPods(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = node
			return c.WatchPods(ctx, o)
		},
	}
	nsLW := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.ListNamespaces(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.WatchNamespaces(ctx, o)
		},
	}
	byNamespace := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	pods = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(podLW, c), &corev1.Pod{}, 0, byNamespace)
	namespaces = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(nsLW, c), &corev1.Namespace{}, 0, byNamespace)
	return pods, namespaces
}

func newQueue(resync time.Duration) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, resync),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "capture-agent"})
}

// runStatic is Run over Options.Static: the pods never change, so the
// reconcile runs at start (retried on failure) and on every resync.
func (a *Agent) runStatic(ctx context.Context) error {
	a.log.Info("capture agent running on static pods", zap.String("node", a.opts.NodeName), zap.Int("pods", len(a.opts.Static.Pods)))
	a.loop(ctx, newQueue(a.opts.Resync))
	return nil
}

// loop runs the reconcile worker, starting with a full reconcile and then on
// every resync, until ctx is done; it returns once the worker has stopped.
func (a *Agent) loop(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer queue.ShutDown()
	queue.Add(keyResync)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for a.processNext(ctx, queue) {
		}
	}()

	tick := time.NewTicker(a.opts.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			queue.Add(keyResync)
		}
	}
}

// processNext runs one reconcile; false when the queue is shut down.
func (a *Agent) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	if ctx.Err() != nil {
		return false // stopping: leave the datapath as it is
	}
	if err := a.reconcile(ctx, key == keyResync); err != nil {
		a.metrics.reconcileErrors.Inc()
		a.log.Warn("capture reconcile failed, will retry", zap.String("trigger", key), zap.Error(err))
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

func (a *Agent) attachUplink() error {
	uplink, err := a.opts.Uplink.Uplink()
	if err != nil {
		return err
	}
	if err := a.opts.Datapath.Attach(uplink); err != nil {
		return fmt.Errorf("attach uplink: %w", err)
	}
	return nil
}

// reconcile converges the datapath once. full (the periodic resync) also
// re-asserts node setup and every attachment.
func (a *Agent) reconcile(ctx context.Context, full bool) error {
	var errs []error
	if full && a.opts.NodeSetup != nil {
		if err := a.opts.NodeSetup.Ensure(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node setup: %w", err))
		}
	}
	pods, namespaces, err := a.snapshot()
	if err != nil {
		return err
	}
	uplink, err := a.opts.Uplink.Uplink()
	if err != nil {
		errs = append(errs, fmt.Errorf("find uplink: %w", err))
		uplink = 0
	}
	targets, err := Targets(a.opts.NodeName, pods, namespaces, func(ip netip.Addr) (int, error) {
		ifindex, err := a.opts.Veths.HostVeth(ip)
		if err == nil && ifindex == uplink {
			// A pod whose /32 route is gone can resolve to the uplink (an
			// on-link route); never take the uplink for a pod's veth.
			return 0, fmt.Errorf("route to pod %s leaves by the uplink: %w", ip, ErrNoVeth)
		}
		return ifindex, err
	})
	if err != nil {
		errs = append(errs, err)
	}
	actual, err := a.actual()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	_, actions := Plan(targets, uplink, actual, full)
	after, applyErr := a.apply(actions, actual, targets)
	errs = append(errs, applyErr)
	err = errors.Join(errs...)
	a.publish(uplink, after, targets, err)
	return err
}

// snapshot reads the informer caches (or the static pods).
func (a *Agent) snapshot() ([]Pod, map[string]Namespace, error) {
	if st := a.opts.Static; st != nil {
		return st.Pods, st.Namespaces, nil
	}
	kpods, err := a.pods.List(labels.Everything())
	if err != nil {
		return nil, nil, fmt.Errorf("list pods: %w", err)
	}
	kns, err := a.namespaces.List(labels.Everything())
	if err != nil {
		return nil, nil, fmt.Errorf("list namespaces: %w", err)
	}
	pods := make([]Pod, 0, len(kpods))
	for _, p := range kpods {
		pods = append(pods, TrimPod(p))
	}
	namespaces := make(map[string]Namespace, len(kns))
	for _, ns := range kns {
		namespaces[ns.Name] = TrimNamespace(ns)
	}
	return pods, namespaces, nil
}

// actual reads the datapath state.
func (a *Agent) actual() (State, error) {
	enrolled, err := a.opts.Datapath.Enrolled()
	if err != nil {
		return State{}, fmt.Errorf("read capture state: %w", err)
	}
	attached, err := a.opts.Datapath.Attached()
	if err != nil {
		return State{}, fmt.Errorf("read capture state: %w", err)
	}
	s := State{Attached: make(map[int]bool, len(attached)), Enrolled: enrolled}
	for _, ifindex := range attached {
		s.Attached[ifindex] = true
	}
	return s, nil
}

// apply runs the actions, going on after a failure, and returns the state
// they left (actual updated by the actions that succeeded).
func (a *Agent) apply(actions []Action, actual State, targets []Target) (State, error) {
	after := State{Attached: make(map[int]bool, len(actual.Attached)), Enrolled: make(map[netip.Addr]int, len(actual.Enrolled))}
	for k, v := range actual.Attached {
		after.Attached[k] = v
	}
	for k, v := range actual.Enrolled {
		after.Enrolled[k] = v
	}
	owner := make(map[netip.Addr]Target, len(targets))
	for _, t := range targets {
		owner[t.IP] = t
	}
	dp := a.opts.Datapath
	var errs []error
	for _, act := range actions {
		var err error
		switch act.Op {
		case OpAttach:
			if err = dp.Attach(act.Ifindex); err == nil {
				after.Attached[act.Ifindex] = true
			}
		case OpEnroll:
			if err = dp.Enroll(act.Ifindex, act.IP); err == nil {
				after.Enrolled[act.IP] = act.Ifindex
			}
		case OpUnenroll:
			if err = dp.Unenroll(act.IP); err == nil {
				delete(after.Enrolled, act.IP)
			}
		case OpDetach:
			if err = dp.Detach(act.Ifindex); err == nil {
				delete(after.Attached, act.Ifindex)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", act, err))
			continue
		}
		switch {
		case act.Op == OpEnroll || act.Op == OpUnenroll:
			t := owner[act.IP]
			a.log.Info("pod address capture changed", zap.Stringer("op", act.Op),
				zap.String("namespace", t.Namespace), zap.String("pod", t.Name),
				zap.Stringer("ip", act.IP), zap.Int("ifindex", act.Ifindex))
		case act.Op == OpDetach || !actual.Attached[act.Ifindex]: // not a re-attach
			a.log.Info("capture interface changed", zap.Stringer("op", act.Op), zap.Int("ifindex", act.Ifindex))
		}
	}
	return after, errors.Join(errs...)
}

// publish updates the status and the gauges.
func (a *Agent) publish(uplink int, after State, targets []Target, err error) {
	s := &Status{Uplink: uplink}
	if err != nil {
		s.LastError = err.Error()
	}
	for ifindex := range after.Attached {
		s.Attached = append(s.Attached, ifindex)
	}
	slices.Sort(s.Attached)
	type podKey struct{ ns, name string }
	enrolledPods := map[podKey]bool{}
	for _, t := range targets {
		ifindex, ok := after.Enrolled[t.IP]
		if !t.Enroll || !ok {
			continue
		}
		s.Pods = append(s.Pods, CapturedPod{Namespace: t.Namespace, Name: t.Name, IP: t.IP, Ifindex: ifindex})
		enrolledPods[podKey{t.Namespace, t.Name}] = true
	}
	slices.SortFunc(s.Pods, func(x, y CapturedPod) int {
		if c := cmp.Compare(x.Namespace, y.Namespace); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return x.IP.Compare(y.IP)
	})
	a.status.Store(s)
	a.metrics.enrolledPods.Set(float64(len(enrolledPods)))
	a.metrics.attached.Set(float64(len(after.Attached)))
}

// podChanged calls change when a pod update matters to the agent (the cache
// holds slim pods, so most status churn is already gone).
func podChanged(o, n any, change func()) {
	op, ok1 := o.(*corev1.Pod)
	np, ok2 := n.(*corev1.Pod)
	if ok1 && ok2 && reflect.DeepEqual(TrimPod(op), TrimPod(np)) {
		return
	}
	change()
}

// namespaceChanged calls change when a namespace's enrollment label changed.
func namespaceChanged(o, n any, change func()) {
	on, ok1 := o.(*corev1.Namespace)
	nn, ok2 := n.(*corev1.Namespace)
	if ok1 && ok2 && on.Labels[DataplaneModeLabel] == nn.Labels[DataplaneModeLabel] {
		return
	}
	change()
}
