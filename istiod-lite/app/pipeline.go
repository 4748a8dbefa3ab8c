package app

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/kube"
	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/status"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointctl"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
	"github.com/ambient-mesh/ambient/istiod-lite/xds"
)

// State is one build of the model: immutable once published.
type State struct {
	Version  int64
	Built    time.Time
	Model    *model.Snapshot
	Waypoint WaypointL7
	Status   status.Desired
}

// resourceSetter is the part of xds.Server the pipeline writes to.
type resourceSetter interface {
	SetResources(typeURL string, resources map[string]proto.Message) error
	UpdateResources(typeURL string, upsert map[string]proto.Message, remove []string) error
	MarkReady()
}

// pipeline is the single writer of the served resources: rebuild runs in one
// goroutine (the Debouncer's), and publishes each State atomically for the
// debug handlers and the status writer.
type pipeline struct {
	log        *zap.Logger
	listers    kube.Listers
	httpRoutes gwlisters.HTTPRouteLister
	grpcRoutes gwlisters.GRPCRouteLister
	cfg        model.Config
	srv        resourceSetter
	onBuilt    func()
	// takeBatch takes the informer events the build carries
	// (kube.Watcher.TakeBatch); nil means every build is a full one.
	takeBatch func() kube.Batch
	metrics   *pipelineMetrics
	// forceFull makes the next build push every resource type in full
	// (after a failed build, whose batch was lost).
	forceFull bool

	state   atomic.Pointer[State]
	version int64
}

var _ resourceSetter = (*xds.Server)(nil)

// rebuild recomputes the model from the caches and pushes the difference.
//
// When the batch holds only pod changes it takes the pods path: only those
// pods' workloads can differ (a workload depends on its pod, namespace,
// Services, policies and waypoints, never on other pods; nothing else
// depends on pods), so it recomputes them on the previous model
// (model.Snapshot.WithPods) and pushes just them, instead of rebuilding and
// diffing all 10,000 at a large cluster's scale. Waypoint resources are
// rebuilt in full when any waypoint exists (their endpoints list pods).
func (p *pipeline) rebuild() (err error) {
	var batch kube.Batch
	if p.takeBatch != nil {
		batch = p.takeBatch()
	}
	prev := p.state.Load()
	defer func() {
		if err != nil {
			p.forceFull = true // the batch is lost: the next build diffs everything
		}
	}()
	start := time.Now()
	var snap *model.Snapshot
	var wp WaypointL7
	incremental := batch.PodsOnly() && !p.forceFull && prev != nil
	if incremental {
		pods, err := p.currentPods(batch.Pods)
		if err != nil {
			return err
		}
		snap = prev.Model.WithPods(pods, batch.Pods)
		incremental = snap != nil
	}
	switch {
	case incremental && len(prev.Waypoint.Waypoints) == 0:
		wp = prev.Waypoint // no Gateway changed, so still no waypoint
	default:
		in, err := kube.Snapshot(p.listers)
		if err != nil {
			return fmt.Errorf("read caches: %w", err)
		}
		if !incremental {
			snap = model.Build(in, p.cfg)
		}
		if wp, err = p.buildWaypoints(in, snap); err != nil {
			return err
		}
	}
	if incremental {
		if err := p.pushPods(snap, batch.Pods); err != nil {
			return fmt.Errorf("push %s: %w", model.TypeAddress, err)
		}
	} else {
		res := snap.Resources()
		for _, t := range []string{model.TypeAddress, model.TypeAuthorization} {
			if err := p.srv.SetResources(t, res[t]); err != nil {
				return fmt.Errorf("push %s: %w", t, err)
			}
		}
	}
	for _, t := range WaypointTypes {
		if err := p.srv.SetResources(t, wp.Resources[t]); err != nil {
			return fmt.Errorf("push %s: %w", t, err)
		}
	}
	p.forceFull = false
	p.version++
	first := prev == nil
	var prevConds []model.Condition
	if prev != nil {
		prevConds = prev.Model.Conditions
	}
	for _, c := range newRejections(prevConds, snap.Conditions) {
		// The message names the offending field, e.g. rules[0].from[0].source.ipBlocks[0].
		p.log.Warn("policy not accepted by ztunnel as written",
			zap.String("kind", c.Object.Kind), zap.String("namespace", c.Object.Namespace), zap.String("name", c.Object.Name),
			zap.String("condition", c.Type), zap.String("reason", c.Reason), zap.String("message", c.Message))
	}
	var prevWP []waypointxds.Condition
	if prev != nil {
		prevWP = prev.Waypoint.Conditions
	}
	for _, c := range newWaypointRejections(prevWP, wp.Conditions) {
		p.log.Warn("object not accepted by the waypoint as written",
			zap.String("kind", c.Kind), zap.String("namespace", c.Namespace), zap.String("name", c.Name),
			zap.String("condition", c.Type), zap.String("reason", c.Reason), zap.String("message", c.Message))
	}
	p.state.Store(&State{
		Version: p.version, Built: start, Model: snap, Waypoint: wp,
		Status: status.FromConditions(snap.Conditions, wp.Conditions, waypointctl.ControllerName),
	})
	if first {
		p.srv.MarkReady()
	}
	pushed := time.Now()
	if p.metrics != nil {
		mode := "full"
		if incremental {
			mode = "pods"
		}
		p.metrics.rebuilds.WithLabelValues(mode).Inc()
		p.metrics.build.Observe(pushed.Sub(start).Seconds())
		if !batch.Empty() {
			p.metrics.eventToPush.Observe(pushed.Sub(batch.First).Seconds())
		}
		p.metrics.objects.WithLabelValues("workload").Set(float64(len(snap.Workloads)))
		p.metrics.objects.WithLabelValues("service").Set(float64(len(snap.Services)))
		p.metrics.objects.WithLabelValues("policy").Set(float64(len(snap.Policies)))
	}
	p.log.Debug("model pushed",
		zap.Int64("version", p.version),
		zap.Int("workloads", len(snap.Workloads)), zap.Int("services", len(snap.Services)),
		zap.Int("policies", len(snap.Policies)), zap.Int("waypoints", len(wp.Waypoints)),
		zap.Bool("pods_only", incremental), zap.Duration("took", time.Since(start)))
	if p.onBuilt != nil {
		p.onBuilt()
	}
	return nil
}

// buildWaypoints computes every waypoint's Envoy resources.
func (p *pipeline) buildWaypoints(in model.Input, snap *model.Snapshot) (WaypointL7, error) {
	hrs, err := p.httpRoutes.List(labels.Everything())
	if err != nil {
		return WaypointL7{}, fmt.Errorf("list HTTPRoutes: %w", err)
	}
	grs, err := p.grpcRoutes.List(labels.Everything())
	if err != nil {
		return WaypointL7{}, fmt.Errorf("list GRPCRoutes: %w", err)
	}
	aps, err := p.listers.AuthorizationPolicies.List(labels.Everything())
	if err != nil {
		return WaypointL7{}, fmt.Errorf("list AuthorizationPolicies: %w", err)
	}
	wp, err := BuildWaypoints(WaypointInputs(in, snap, p.cfg, hrs, grs, aps))
	if err != nil {
		return WaypointL7{}, fmt.Errorf("build waypoint configuration: %w", err)
	}
	return wp, nil
}

// currentPods reads the pods named by keys ("<ns>/<name>") from the cache;
// deleted ones are left out.
func (p *pipeline) currentPods(keys map[string]bool) ([]model.Pod, error) {
	out := make([]model.Pod, 0, len(keys))
	for key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		pod, err := p.listers.Pods.Pods(ns).Get(name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read pod %s from the cache: %w", key, err)
		}
		out = append(out, model.FromPod(pod))
	}
	return out, nil
}

// pushPods pushes the workloads of the changed pods ("<ns>/<name>" keys):
// upserted when the model has one, removed otherwise.
func (p *pipeline) pushPods(snap *model.Snapshot, pods map[string]bool) error {
	upsert := make(map[string]proto.Message, len(pods))
	var remove []string
	for key := range pods {
		ns, name, _ := strings.Cut(key, "/")
		uid := model.WorkloadUID(p.cfg.ClusterID, ns, name)
		if w := snap.Workloads[uid]; w != nil {
			upsert[uid] = model.WorkloadAddress(w)
		} else {
			remove = append(remove, uid)
		}
	}
	return p.srv.UpdateResources(model.TypeAddress, upsert, remove)
}

// Current returns the last published State, or nil before the first build.
func (p *pipeline) Current() *State { return p.state.Load() }

// desiredStatus is the status writer's Source.
func (p *pipeline) desiredStatus() (status.Desired, bool) {
	s := p.state.Load()
	if s == nil {
		return status.Desired{}, false
	}
	return s.Status, true
}

// newRejections returns the conditions of next that are not accepted
// (Status false) and were not already reported, identical, in prev: each
// rejection is logged once, not on every rebuild.
func newRejections(prev, next []model.Condition) []model.Condition {
	return unreported(prev, next, func(c model.Condition) model.Condition { return c },
		func(c model.Condition) bool { return !c.Status })
}

// newWaypointRejections is newRejections for the waypoint translation's
// conditions (HTTPRoute, GRPCRoute, AuthorizationPolicy at a waypoint),
// compared by value: each build has its own ParentRef pointers.
func newWaypointRejections(prev, next []waypointxds.Condition) []waypointxds.Condition {
	key := func(c waypointxds.Condition) string {
		parent := ""
		if c.ParentRef != nil {
			parent = string(c.ParentRef.Name)
		}
		return strings.Join([]string{c.Kind, c.Namespace, c.Name, parent, c.Type, c.Reason, c.Message}, "\x00")
	}
	return unreported(prev, next, key, func(c waypointxds.Condition) bool { return c.Status == metav1.ConditionFalse })
}

// unreported returns the conditions of next that are rejected and whose
// key was not in prev.
func unreported[C any, K comparable](prev, next []C, key func(C) K, rejected func(C) bool) []C {
	seen := make(map[K]bool, len(prev))
	for _, c := range prev {
		seen[key(c)] = true
	}
	var out []C
	for _, c := range next {
		if rejected(c) && !seen[key(c)] {
			out = append(out, c)
		}
	}
	return out
}

// pipelineMetrics are the rebuild's metrics.
type pipelineMetrics struct {
	rebuilds    *prometheus.CounterVec // ambient_model_rebuilds_total{mode}
	build       prometheus.Histogram   // ambient_model_build_seconds
	eventToPush prometheus.Histogram   // ambient_informer_event_to_push_seconds
	objects     *prometheus.GaugeVec   // ambient_model_objects{kind}
}

func newPipelineMetrics(reg prometheus.Registerer) *pipelineMetrics {
	m := &pipelineMetrics{
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ambient_model_rebuilds_total",
			Help: "Model rebuilds pushed, by mode: full (every type diffed) or pods (only the changed pods' workloads pushed).",
		}, []string{"mode"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ambient_model_build_seconds",
			Help:    "Time to rebuild the model from the informer caches and hand every type to the xDS server.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .2, .5, 1, 2, 5},
		}),
		eventToPush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ambient_informer_event_to_push_seconds",
			Help: "Informer lag inside istiod-lite: time from the first informer event of a batch " +
				"to the rebuilt model being handed to the xDS server (debounce + build).",
			Buckets: []float64{.01, .05, .1, .15, .2, .3, .5, 1, 2, 5, 10},
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ambient_model_objects",
			Help: "Objects in the last built model, by kind (workload, service, policy).",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.rebuilds, m.build, m.eventToPush, m.objects)
	return m
}
