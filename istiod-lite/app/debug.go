package app

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
	"github.com/ambient-mesh/ambient/istiod-lite/xds"
	"github.com/ambient-mesh/ambient/pkg/version"
)

// Connection is one entry of /debug/connections, in the shape ambientctl
// proxy-status parses (ctl/internal/dump.Connection), plus the xds server's
// extra details.
type Connection struct {
	NodeID         string                   `json:"nodeId"`
	PodName        string                   `json:"podName"`
	PodNamespace   string                   `json:"podNamespace,omitempty"`
	ConnectedSince time.Time                `json:"connectedSince"`
	Types          map[string]ConnTypeState `json:"types"`

	ID       int64             `json:"id"`
	Peer     string            `json:"peer,omitempty"`
	Identity string            `json:"identity,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ConnTypeState is one type URL on a connection. ackedVersion equals
// sentVersion exactly when the type is in sync (ambientctl's rule), so a
// STALE or NACKED type never shows as SYNCED.
type ConnTypeState struct {
	SentVersion  string    `json:"sentVersion"`
	AckedVersion string    `json:"ackedVersion"`
	Nacks        int       `json:"nacks"`
	LastError    string    `json:"lastError,omitempty"`
	LastPush     time.Time `json:"lastPush,omitzero"`
	Sync         string    `json:"sync"`
}

// AdaptConnections converts the xds server's view into /debug/connections.
func AdaptConnections(cs []xds.ConnectionStatus) []Connection {
	out := make([]Connection, 0, len(cs))
	for _, c := range cs {
		name, ns := podOf(c)
		conn := Connection{
			NodeID: c.NodeID, PodName: name, PodNamespace: ns, ConnectedSince: c.ConnectedSince,
			Types: map[string]ConnTypeState{}, ID: c.ID, Peer: c.Peer, Identity: c.Identity, Metadata: c.Metadata,
		}
		for _, t := range c.Types {
			s := ConnTypeState{SentVersion: t.LastSentVersion, Nacks: t.NACKs, LastPush: t.LastSentTime, Sync: t.Sync}
			switch t.Sync {
			case xds.SyncSynced, xds.SyncNotSent:
				s.AckedVersion = s.SentVersion
			default:
				s.AckedVersion = t.LastAckedVersion
				if s.AckedVersion == s.SentVersion {
					s.AckedVersion = "" // acked an older response with the same version
				}
			}
			if t.LastNACK != nil {
				s.LastError = t.LastNACK.Error
			}
			conn.Types[t.TypeURL] = s
		}
		out = append(out, conn)
	}
	return out
}

// podOf finds the proxy's pod: node metadata POD_NAME/NAME and
// POD_NAMESPACE/NAMESPACE, else Istio's node id "<type>~<ip>~<pod>.<ns>~<domain>".
func podOf(c xds.ConnectionStatus) (name, ns string) {
	name = first(c.Metadata["POD_NAME"], c.Metadata["NAME"])
	ns = first(c.Metadata["POD_NAMESPACE"], c.Metadata["NAMESPACE"])
	if parts := strings.Split(c.NodeID, "~"); len(parts) == 4 {
		n, s, _ := strings.Cut(parts[2], ".")
		name, ns = first(name, n), first(ns, s)
	}
	if name == "" {
		name = c.NodeID
	}
	return name, ns
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func connectionsHandler(s *xds.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, AdaptConnections(s.Connections()))
	})
}

// ModelView is /debug/model.
type ModelView struct {
	Version            int64                      `json:"version"`
	Built              time.Time                  `json:"built"`
	Workloads          map[string]json.RawMessage `json:"workloads"`
	Services           map[string]json.RawMessage `json:"services"`
	Policies           map[string]json.RawMessage `json:"policies"`
	Conditions         []model.Condition          `json:"conditions"`
	Diagnostics        []model.Diagnostic         `json:"diagnostics"`
	Waypoints          []WaypointView             `json:"waypoints"`
	WaypointConditions []waypointxds.Condition    `json:"waypointConditions"`
	Shared             map[string][]string        `json:"sharedWaypointResources"`
}

// WaypointView lists the resource names of one waypoint.
type WaypointView struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Prefix    string   `json:"prefix"`
	Listeners []string `json:"listeners"`
	Routes    []string `json:"routes"`
}

// NewModelView renders a State for /debug/model.
func NewModelView(s *State) ModelView {
	v := ModelView{
		Version: s.Version, Built: s.Built,
		Workloads: protoMap(s.Model.Workloads), Services: protoMap(s.Model.Services), Policies: protoMap(s.Model.Policies),
		Conditions: nonNil(s.Model.Conditions), Diagnostics: nonNil(s.Model.Diagnostics),
		WaypointConditions: nonNil(s.Waypoint.Conditions), Waypoints: []WaypointView{},
		Shared: map[string][]string{
			"clusters":  sortedKeys(s.Waypoint.Resources[waypointxds.TypeCluster]),
			"endpoints": sortedKeys(s.Waypoint.Resources[waypointxds.TypeEndpoint]),
		},
	}
	for _, k := range s.Waypoint.Waypoints {
		prefix := WaypointPrefix(k.Namespace, k.Name)
		wv := WaypointView{Namespace: k.Namespace, Name: k.Name, Prefix: prefix}
		for _, n := range sortedKeys(s.Waypoint.Resources[waypointxds.TypeListener]) {
			if strings.HasPrefix(n, prefix) {
				wv.Listeners = append(wv.Listeners, n)
			}
		}
		for _, n := range sortedKeys(s.Waypoint.Resources[waypointxds.TypeRoute]) {
			if strings.HasPrefix(n, prefix) {
				wv.Routes = append(wv.Routes, n)
			}
		}
		v.Waypoints = append(v.Waypoints, wv)
	}
	return v
}

// nonNil makes empty lists render as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func protoMap[M proto.Message](m map[string]M) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, msg := range m {
		b, err := protojson.Marshal(msg)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out[k] = b
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func modelHandler(p *pipeline) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s := p.Current()
		if s == nil {
			http.Error(w, "the model has not been built yet (informers syncing)", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, NewModelView(s))
	})
}

func versionHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]string{"version": version.String()})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
