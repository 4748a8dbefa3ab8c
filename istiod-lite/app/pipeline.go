package app

import (
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/labels"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/kube"
	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/status"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointctl"
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

	state   atomic.Pointer[State]
	version int64
}

var _ resourceSetter = (*xds.Server)(nil)

// rebuild recomputes everything from the caches and pushes the difference.
func (p *pipeline) rebuild() error {
	start := time.Now()
	in, err := kube.Snapshot(p.listers)
	if err != nil {
		return fmt.Errorf("read caches: %w", err)
	}
	snap := model.Build(in, p.cfg)
	hrs, err := p.httpRoutes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list HTTPRoutes: %w", err)
	}
	grs, err := p.grpcRoutes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list GRPCRoutes: %w", err)
	}
	aps, err := p.listers.AuthorizationPolicies.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list AuthorizationPolicies: %w", err)
	}
	wp, err := BuildWaypoints(WaypointInputs(in, snap, p.cfg, hrs, grs, aps))
	if err != nil {
		return fmt.Errorf("build waypoint configuration: %w", err)
	}
	res := snap.Resources()
	for _, t := range []string{model.TypeAddress, model.TypeAuthorization} {
		if err := p.srv.SetResources(t, res[t]); err != nil {
			return fmt.Errorf("push %s: %w", t, err)
		}
	}
	for _, t := range WaypointTypes {
		if err := p.srv.SetResources(t, wp.Resources[t]); err != nil {
			return fmt.Errorf("push %s: %w", t, err)
		}
	}
	p.version++
	first := p.state.Load() == nil
	p.state.Store(&State{
		Version: p.version, Built: start, Model: snap, Waypoint: wp,
		Status: status.FromConditions(snap.Conditions, wp.Conditions, waypointctl.ControllerName),
	})
	if first {
		p.srv.MarkReady()
	}
	p.log.Debug("model pushed",
		zap.Int64("version", p.version),
		zap.Int("workloads", len(snap.Workloads)), zap.Int("services", len(snap.Services)),
		zap.Int("policies", len(snap.Policies)), zap.Int("waypoints", len(wp.Waypoints)),
		zap.Duration("took", time.Since(start)))
	if p.onBuilt != nil {
		p.onBuilt()
	}
	return nil
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
