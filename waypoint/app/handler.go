package app

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/pkg/xds"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// handler is the xDS handler of the four waypoint types and the one writer
// of the state store. It holds the full set of each type (the delta client
// hands over changes) so it can give the store whole sets.
type handler struct {
	prefix string
	store  *state.Store

	mu   sync.Mutex // guards held against the admin's readers
	held map[string]map[string]proto.Message
}

func newHandler(prefix string, store *state.Store) *handler {
	h := &handler{prefix: prefix, store: store, held: map[string]map[string]proto.Message{}}
	for _, t := range xds.WaypointTypes {
		h.held[t] = map[string]proto.Message{}
	}
	return h
}

// handlers maps every waypoint type URL to h.
func (h *handler) handlers() map[string]xds.Handler {
	m := map[string]xds.Handler{}
	for _, t := range xds.WaypointTypes {
		m[t] = h
	}
	return m
}

// Update implements xds.Handler: it applies the change to the held set and
// hands the whole set to the store. An error (the store refuses the set)
// NACKs the response and leaves everything as it was.
func (h *handler) Update(typeURL string, upserts map[string]proto.Message, removes []string, _ string) error {
	upserts, removes, err := OwnResources(h.prefix, typeURL, upserts, removes)
	if err != nil {
		return err
	}
	h.mu.Lock()
	cur, ok := h.held[typeURL]
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("unexpected type %s", typeURL)
	}
	next := maps.Clone(cur)
	for _, name := range removes {
		delete(next, name)
	}
	maps.Copy(next, upserts)
	if err := h.apply(typeURL, next); err != nil {
		return fmt.Errorf("waypoint refuses %s (names shown without the prefix %q): %w", xds.ShortType(typeURL), h.prefix, err)
	}
	h.mu.Lock()
	h.held[typeURL] = next
	h.mu.Unlock()
	return nil
}

func (h *handler) apply(typeURL string, set map[string]proto.Message) error {
	names := slices.Sorted(maps.Keys(set))
	switch typeURL {
	case xds.ListenerType:
		return h.store.SetListeners(typed[*listenerv3.Listener](names, set))
	case xds.RouteType:
		return h.store.SetRoutes(typed[*routev3.RouteConfiguration](names, set))
	case xds.ClusterType:
		return h.store.SetClusters(typed[*clusterv3.Cluster](names, set))
	case xds.EndpointType:
		return h.store.SetEndpoints(typed[*endpointv3.ClusterLoadAssignment](names, set))
	}
	return fmt.Errorf("unexpected type %s", typeURL)
}

// typed lists set's values in names order; a value of another Go type is
// skipped (the xDS client decodes by type URL, so there is none).
func typed[T proto.Message](names []string, set map[string]proto.Message) []T {
	out := make([]T, 0, len(names))
	for _, n := range names {
		if v, ok := set[n].(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// resourceSummary is a /config_dump section: names and count of one type.
type resourceSummary struct {
	Count int      `json:"count"`
	Names []string `json:"names"`
}

// summary describes the held resources of typeURL.
func (h *handler) summary(typeURL string) resourceSummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := slices.AppendSeq([]string{}, maps.Keys(h.held[typeURL]))
	slices.Sort(names)
	return resourceSummary{Count: len(names), Names: names}
}

// load replaces every type at once from a local file's resources; on error
// nothing changes.
func (h *handler) load(r state.Resources) error {
	if err := h.store.Apply(r); err != nil {
		return err
	}
	held := map[string]map[string]proto.Message{}
	add := func(typeURL, name string, m proto.Message) {
		if held[typeURL] == nil {
			held[typeURL] = map[string]proto.Message{}
		}
		held[typeURL][name] = m
	}
	for _, t := range xds.WaypointTypes {
		held[t] = map[string]proto.Message{}
	}
	for _, m := range r.Listeners {
		add(xds.ListenerType, m.GetName(), m)
	}
	for _, m := range r.Routes {
		add(xds.RouteType, m.GetName(), m)
	}
	for _, m := range r.Clusters {
		add(xds.ClusterType, m.GetName(), m)
	}
	for _, m := range r.Endpoints {
		add(xds.EndpointType, m.GetClusterName(), m)
	}
	h.mu.Lock()
	h.held = held
	h.mu.Unlock()
	return nil
}
