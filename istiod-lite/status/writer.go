package status

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istiolisters "istio.io/client-go/pkg/listers/security/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"
)

// DefaultResync is how often a full pass runs without triggers, repairing
// status edited by others and retrying failed writes.
const DefaultResync = time.Minute

// Options configures a Writer.
type Options struct {
	Istio   istioclient.Interface
	Gateway gwclient.Interface
	// Cached objects to compare against (the informers' listers; trimmed
	// objects are fine: status and generation are kept).
	Policies   istiolisters.AuthorizationPolicyLister
	HTTPRoutes gwlisters.HTTPRouteLister
	GRPCRoutes gwlisters.GRPCRouteLister
	// Source returns the latest desired status; ok is false until the model
	// has been built once (nothing is written before).
	Source func() (d Desired, ok bool)
	// Controller is the controllerName of our route parents.
	Controller gatewayv1.GatewayController
	// Resync period; default DefaultResync.
	Resync time.Duration
	// Registerer receives the metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Writer writes status; see the package comment.
type Writer struct {
	o       Options
	trigger chan struct{}
	writes  *prometheus.CounterVec
}

// New builds a Writer.
func New(o Options) (*Writer, error) {
	if o.Istio == nil || o.Gateway == nil || o.Policies == nil || o.HTTPRoutes == nil || o.GRPCRoutes == nil || o.Source == nil || o.Logger == nil {
		return nil, fmt.Errorf("status writer: clients, listers, Source and Logger are required")
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Writer{o: o, trigger: make(chan struct{}, 1), writes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "istiod_lite_status_writes_total",
		Help: "Status updates written by istiod-lite, by kind and result (success, conflict, error).",
	}, []string{"kind", "result"})}
	if o.Registerer != nil {
		if err := o.Registerer.Register(w.writes); err != nil {
			return nil, fmt.Errorf("register status metrics: %w", err)
		}
	}
	return w, nil
}

// Trigger asks for a reconcile round; it never blocks.
func (w *Writer) Trigger() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run reconciles on every trigger and every resync until ctx ends. It can be
// run again after it returns (one leader term each).
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.Resync)
	defer t.Stop()
	for {
		if err := w.Reconcile(ctx); err != nil && ctx.Err() == nil {
			w.o.Logger.Warn("status reconcile incomplete", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.trigger:
		case <-t.C:
		}
	}
}

// Reconcile runs one round over every cached policy and route. It returns the
// first error after trying every object.
func (w *Writer) Reconcile(ctx context.Context) error {
	d, ok := w.o.Source()
	if !ok {
		return nil
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	aps, err := w.o.Policies.List(labels.Everything())
	keep(err)
	for _, ap := range aps {
		k := Key{ap.Namespace, ap.Name}
		if _, changed := PolicyConditions(ap.Status.Conditions, d.Policies[k], ap.Generation, w.o.Now()); changed {
			keep(w.writePolicy(ctx, k, d.Policies[k]))
		}
	}
	hrs, err := w.o.HTTPRoutes.List(labels.Everything())
	keep(err)
	for _, r := range hrs {
		k := Key{r.Namespace, r.Name}
		if _, changed := RouteParents(r.Status.Parents, d.HTTPRoutes[k], w.o.Controller, w.o.Now()); changed {
			keep(w.writeHTTPRoute(ctx, k, d.HTTPRoutes[k]))
		}
	}
	grs, err := w.o.GRPCRoutes.List(labels.Everything())
	keep(err)
	for _, r := range grs {
		k := Key{r.Namespace, r.Name}
		if _, changed := RouteParents(r.Status.Parents, d.GRPCRoutes[k], w.o.Controller, w.o.Now()); changed {
			keep(w.writeGRPCRoute(ctx, k, d.GRPCRoutes[k]))
		}
	}
	return first
}

func (w *Writer) writePolicy(ctx context.Context, k Key, want []metav1.Condition) error {
	c := w.o.Istio.SecurityV1().AuthorizationPolicies(k.Namespace)
	live, err := c.Get(ctx, k.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // deleted since the cache read
	}
	if err != nil {
		return w.result("AuthorizationPolicy", k, fmt.Errorf("get AuthorizationPolicy %s: %w", k, err))
	}
	next, changed := PolicyConditions(live.Status.Conditions, want, live.Generation, w.o.Now())
	if !changed {
		return nil
	}
	live.Status.Conditions = next
	_, err = c.UpdateStatus(ctx, live, metav1.UpdateOptions{})
	return w.result("AuthorizationPolicy", k, wrap("AuthorizationPolicy", k, err))
}

func (w *Writer) writeHTTPRoute(ctx context.Context, k Key, want []gatewayv1.RouteParentStatus) error {
	c := w.o.Gateway.GatewayV1().HTTPRoutes(k.Namespace)
	live, err := c.Get(ctx, k.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // deleted since the cache read
	}
	if err != nil {
		return w.result("HTTPRoute", k, fmt.Errorf("get HTTPRoute %s: %w", k, err))
	}
	next, changed := RouteParents(live.Status.Parents, want, w.o.Controller, w.o.Now())
	if !changed {
		return nil
	}
	live.Status.Parents = next
	_, err = c.UpdateStatus(ctx, live, metav1.UpdateOptions{})
	return w.result("HTTPRoute", k, wrap("HTTPRoute", k, err))
}

func (w *Writer) writeGRPCRoute(ctx context.Context, k Key, want []gatewayv1.RouteParentStatus) error {
	c := w.o.Gateway.GatewayV1().GRPCRoutes(k.Namespace)
	live, err := c.Get(ctx, k.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // deleted since the cache read
	}
	if err != nil {
		return w.result("GRPCRoute", k, fmt.Errorf("get GRPCRoute %s: %w", k, err))
	}
	next, changed := RouteParents(live.Status.Parents, want, w.o.Controller, w.o.Now())
	if !changed {
		return nil
	}
	live.Status.Parents = next
	_, err = c.UpdateStatus(ctx, live, metav1.UpdateOptions{})
	return w.result("GRPCRoute", k, wrap("GRPCRoute", k, err))
}

func wrap(kind string, k Key, err error) error {
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("update status of %s %s: %w", kind, k, err)
}

func (w *Writer) result(kind string, k Key, err error) error {
	switch {
	case err == nil:
		w.writes.WithLabelValues(kind, "success").Inc()
		w.o.Logger.Debug("status written", zap.String("kind", kind), zap.String("object", k.String()))
		return nil
	case apierrors.IsConflict(err):
		// The cache is behind; the informer event brings a new round.
		w.writes.WithLabelValues(kind, "conflict").Inc()
		w.Trigger()
		return nil
	default:
		w.writes.WithLabelValues(kind, "error").Inc()
		return err
	}
}
