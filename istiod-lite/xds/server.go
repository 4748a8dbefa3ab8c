package xds

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

// DefaultTypes are the type URLs served when Options.Types is empty: the
// ztunnel types (Address, Authorization) and the waypoint types (Listener,
// RouteConfiguration, Cluster, ClusterLoadAssignment).
var DefaultTypes = append(append([]string{}, pkgxds.ZtunnelTypes...), pkgxds.WaypointTypes...)

// Options configures New.
type Options struct {
	// Types are the type URLs served; DefaultTypes when empty. A client
	// subscribing to another type gets no response for it (logged once).
	Types []string
	// Registerer receives the pilot_* metrics; nil keeps them unexported.
	Registerer prometheus.Registerer
	// WaitForReady makes the server refuse streams (codes.Unavailable, the
	// clients retry) until MarkReady is called, so that a restarted
	// istiod-lite does not tell clients that every resource was removed
	// before its model is built.
	WaitForReady bool
}

// Server is a delta ADS server with one cache per type URL behind a MuxCache.
type Server struct {
	log     *zap.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	caches  map[string]*typeCache
	ads     serverv3.Server
	tracker *tracker
	metrics *metrics
	ready   atomic.Bool
}

// typeCache is the served set of one type URL.
type typeCache struct {
	typeURL string
	cache   *deltaCache

	// mu serialises writers; current holds the caller's messages as
	// served, for diffs.
	mu      sync.Mutex
	current map[string]proto.Message

	times changeTimes
}

// New builds a server. Call Register to serve it on a gRPC server and Close
// to end all streams at shutdown.
func New(logger *zap.Logger, opts Options) *Server {
	typeURLs := opts.Types
	if len(typeURLs) == 0 {
		typeURLs = DefaultTypes
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:     logger,
		ctx:     ctx,
		cancel:  cancel,
		caches:  make(map[string]*typeCache, len(typeURLs)),
		metrics: newMetrics(logger, opts.Registerer),
	}
	s.ready.Store(!opts.WaitForReady)
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        make(map[string]cachev3.Cache, len(typeURLs)),
	}
	for _, t := range typeURLs {
		tc := &typeCache{typeURL: t, cache: newDeltaCache(t), current: map[string]proto.Message{}}
		s.caches[t] = tc
		mux.Caches[t] = tc.cache
	}
	s.tracker = newTracker(logger, s.metrics, s.changedAt, s.ready.Load)
	cpLog := cpLogger{logger.With(zap.String("subsystem", "go-control-plane"))}
	s.ads = serverv3.NewServer(ctx, &knownTypes{mux: mux, log: logger}, s.tracker, deltaserver.WithLogger(cpLog))
	return s
}

// Register registers the aggregated discovery service on a gRPC server.
// Only delta ADS is served; SotW streams are refused with an error.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.ads)
}

// MarkReady lets streams in (see Options.WaitForReady); call it once the
// first full model has been set.
func (s *Server) MarkReady() { s.ready.Store(true) }

// Ready reports whether streams are accepted.
func (s *Server) Ready() bool { return s.ready.Load() }

// Close ends every open stream (clients reconnect elsewhere). Call it before
// grpc.Server.GracefulStop, which otherwise waits for streams that never end.
func (s *Server) Close() { s.cancel() }

// Types returns the served type URLs, sorted.
func (s *Server) Types() []string {
	out := make([]string, 0, len(s.caches))
	for t := range s.caches {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Resources returns a copy of the set currently served for typeURL (nil for
// an unknown type). The messages are shared and must not be modified.
func (s *Server) Resources(typeURL string) map[string]proto.Message {
	tc, ok := s.caches[typeURL]
	if !ok {
		return nil
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return maps.Clone(tc.current)
}

// SetResources replaces the whole set of typeURL with resources and pushes
// only the difference: resources not proto.Equal to the served ones and
// removals. Nothing is pushed when nothing changed. The messages are owned by
// the server afterwards and must not be modified.
func (s *Server) SetResources(typeURL string, resources map[string]proto.Message) error {
	tc, err := s.cache(typeURL)
	if err != nil {
		return err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	upsert, remove := diff(tc.current, resources)
	return s.apply(tc, upsert, remove)
}

// UpdateResources adds or replaces the resources in upsert and deletes the
// names in remove; unchanged upserts and unknown removals are ignored.
func (s *Server) UpdateResources(typeURL string, upsert map[string]proto.Message, remove []string) error {
	tc, err := s.cache(typeURL)
	if err != nil {
		return err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	changed := map[string]proto.Message{}
	for name, m := range upsert {
		if have, ok := tc.current[name]; !ok || (have != m && !proto.Equal(have, m)) {
			changed[name] = m
		}
	}
	var removed []string
	for _, name := range remove {
		if _, ok := tc.current[name]; ok {
			if _, up := upsert[name]; !up {
				removed = append(removed, name)
			}
		}
	}
	return s.apply(tc, changed, removed)
}

func (s *Server) cache(typeURL string) (*typeCache, error) {
	tc, ok := s.caches[typeURL]
	if !ok {
		return nil, fmt.Errorf("xds: type %s is not served (add it to Options.Types)", typeURL)
	}
	return tc, nil
}

// apply pushes a computed change to the cache; tc.mu is held.
func (s *Server) apply(tc *typeCache, upsert map[string]proto.Message, remove []string) error {
	if len(upsert) == 0 && len(remove) == 0 {
		return nil
	}
	res := make(map[string]types.Resource, len(upsert))
	for name, m := range upsert {
		if m == nil {
			return fmt.Errorf("xds: nil resource %q of type %s", name, tc.typeURL)
		}
		if name == "" {
			return fmt.Errorf("xds: resource of type %s with an empty name", tc.typeURL)
		}
		res[name] = m
	}
	at := time.Now()
	if err := tc.cache.update(res, remove, func(v uint64) { tc.times.record(strconv.FormatUint(v, 10), at) }); err != nil {
		return fmt.Errorf("xds: update %s cache: %w", pkgxds.ShortType(tc.typeURL), err)
	}
	for name, m := range upsert {
		tc.current[name] = m
	}
	for _, name := range remove {
		delete(tc.current, name)
	}
	s.metrics.resources.WithLabelValues(pkgxds.ShortType(tc.typeURL)).Set(float64(len(tc.current)))
	s.log.Debug("xds resources changed", zap.String("type", pkgxds.ShortType(tc.typeURL)),
		zap.Int("upserts", len(upsert)), zap.Int("removes", len(remove)))
	return nil
}

// changedAt returns when the cache of typeURL moved to version.
func (s *Server) changedAt(typeURL, version string) (time.Time, bool) {
	tc, ok := s.caches[typeURL]
	if !ok {
		return time.Time{}, false
	}
	return tc.times.get(version)
}

// changeTimes remembers when the last few cache versions were created, to
// measure push latency.
type changeTimes struct {
	mu    sync.Mutex
	at    map[string]time.Time
	order []string
}

const keptVersions = 64

func (c *changeTimes) record(version string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = make(map[string]time.Time, keptVersions)
	}
	c.at[version] = t
	c.order = append(c.order, version)
	if len(c.order) > keptVersions {
		delete(c.at, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *changeTimes) get(version string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[version]
	return t, ok
}

// knownTypes wraps the MuxCache so that a subscription to a type that is
// not served leaves the stream open (no response for that type) instead of
// failing the whole ADS stream.
type knownTypes struct {
	mux    *cachev3.MuxCache
	log    *zap.Logger
	warned sync.Map
}

func (k *knownTypes) known(typeURL string) bool {
	if _, ok := k.mux.Caches[typeURL]; ok {
		return true
	}
	if _, dup := k.warned.LoadOrStore(typeURL, true); !dup {
		k.log.Warn("xds subscription to a type that is not served", zap.String("type", typeURL))
	}
	return false
}

func (k *knownTypes) CreateWatch(r *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	if !k.known(r.GetTypeUrl()) {
		return func() {}, nil
	}
	return k.mux.CreateWatch(r, sub, ch)
}

func (k *knownTypes) CreateDeltaWatch(r *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	if !k.known(r.GetTypeUrl()) {
		return func() {}, nil
	}
	return k.mux.CreateDeltaWatch(r, sub, ch)
}

func (k *knownTypes) Fetch(ctx context.Context, r *cachev3.Request) (cachev3.Response, error) {
	return k.mux.Fetch(ctx, r)
}

// cpLogger adapts zap to go-control-plane's printf logger with a constant
// message; its info lines (one per watch) go to debug.
type cpLogger struct{ l *zap.Logger }

func (c cpLogger) Debugf(format string, args ...any) { c.log(zap.DebugLevel, format, args) }
func (c cpLogger) Infof(format string, args ...any)  { c.log(zap.DebugLevel, format, args) }
func (c cpLogger) Warnf(format string, args ...any)  { c.log(zap.WarnLevel, format, args) }
func (c cpLogger) Errorf(format string, args ...any) { c.log(zap.ErrorLevel, format, args) }

func (c cpLogger) log(lvl zapcore.Level, format string, args []any) {
	// Formatting is skipped unless enabled: some lines print whole version maps.
	if ce := c.l.Check(lvl, "go-control-plane"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}
