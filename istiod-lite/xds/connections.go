package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

// Sync states of a type on a connection, as proxy-status shows them.
const (
	SyncNotSent = "NOT SENT" // nothing sent yet
	SyncSynced  = "SYNCED"   // the last response was ACKed
	SyncStale   = "STALE"    // the last response is not ACKed yet
	SyncNACKed  = "NACKED"   // the last response was rejected
)

// ConnectionStatus describes one connected ADS stream.
type ConnectionStatus struct {
	// ID is the server's stream id.
	ID       int64  `json:"id"`
	NodeID   string `json:"nodeId"`
	Cluster  string `json:"cluster,omitempty"`
	Peer     string `json:"peer,omitempty"`
	Identity string `json:"identity,omitempty"`
	// Metadata holds the scalar node metadata (NODE_NAME, NAMESPACE, CLUSTER_ID, ...).
	Metadata       map[string]string `json:"metadata,omitempty"`
	ConnectedSince time.Time         `json:"connectedSince"`
	// NACKs is the number of rejected responses over all types.
	NACKs int          `json:"nacks"`
	Types []TypeStatus `json:"types"`
}

// TypeStatus is the state of one type URL on a connection.
type TypeStatus struct {
	TypeURL         string `json:"typeUrl"`
	Wildcard        bool   `json:"wildcard"`
	SubscribedNames int    `json:"subscribedNames,omitempty"`
	// Sync is one of SyncNotSent, SyncSynced, SyncStale, SyncNACKed.
	Sync             string      `json:"sync"`
	LastSentNonce    string      `json:"lastSentNonce,omitempty"`
	LastSentVersion  string      `json:"lastSentVersion,omitempty"`
	LastSentTime     time.Time   `json:"lastSentTime,omitzero"`
	Responses        int         `json:"responses"`
	ResourcesSent    int         `json:"resourcesSent"`
	LastAckedNonce   string      `json:"lastAckedNonce,omitempty"`
	LastAckedVersion string      `json:"lastAckedVersion,omitempty"`
	NACKs            int         `json:"nacks"`
	LastNACK         *NACKStatus `json:"lastNack,omitempty"`
}

// NACKStatus is the last rejection of a type on a connection.
type NACKStatus struct {
	Nonce   string    `json:"nonce"`
	Version string    `json:"version"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

// syncState is the proxy-status verdict for a type.
func syncState(t TypeStatus) string {
	switch {
	case t.LastSentNonce == "":
		return SyncNotSent
	case t.LastNACK != nil && t.LastNACK.Nonce == t.LastSentNonce:
		return SyncNACKed
	case t.LastAckedNonce == t.LastSentNonce:
		return SyncSynced
	default:
		return SyncStale
	}
}

// nodeMetadata keeps the scalar fields of node metadata as strings.
func nodeMetadata(md *structpb.Struct) map[string]string {
	if len(md.GetFields()) == 0 {
		return nil
	}
	out := make(map[string]string, len(md.GetFields()))
	for k, v := range md.GetFields() {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			out[k] = x.StringValue
		case *structpb.Value_NumberValue:
			out[k] = fmt.Sprint(x.NumberValue)
		case *structpb.Value_BoolValue:
			out[k] = fmt.Sprint(x.BoolValue)
		}
	}
	return out
}

// Connections returns the connected streams, sorted by node id then stream id.
func (s *Server) Connections() []ConnectionStatus { return s.tracker.snapshot() }

// ConnectionsHandler serves Connections as JSON (/debug/connections).
func (s *Server) ConnectionsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Connections()) // a write error means the client went away
	})
}

// tracker implements the go-control-plane callbacks: it follows every delta
// stream, detects ACKs and NACKs and feeds the metrics.
type tracker struct {
	serverv3.CallbackFuncs // SotW and REST callbacks: no-ops

	log       *zap.Logger
	metrics   *metrics
	changedAt func(typeURL, version string) (time.Time, bool)
	ready     func() bool

	mu      sync.Mutex
	streams map[int64]*stream
}

type stream struct {
	status ConnectionStatus
	types  map[string]*typeState
}

type typeState struct {
	TypeStatus
	names map[string]struct{}
	// pending maps the nonces sent and not yet ACKed/NACKed to their version.
	pending map[string]string
}

const maxPending = 64

func newTracker(logger *zap.Logger, m *metrics, changedAt func(string, string) (time.Time, bool), ready func() bool) *tracker {
	return &tracker{log: logger, metrics: m, changedAt: changedAt, ready: ready, streams: map[int64]*stream{}}
}

func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	if !t.ready() {
		return status.Error(codes.Unavailable, "istiod-lite is starting: the mesh model is not built yet, retry later")
	}
	st := &stream{status: ConnectionStatus{ID: id, ConnectedSince: time.Now()}, types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.status.Peer = p.Addr.String()
	}
	if ident, ok := IdentityFromContext(ctx); ok {
		st.status.Identity = ident.String()
	}
	t.mu.Lock()
	t.streams[id] = st
	t.mu.Unlock()
	t.metrics.clients.Inc()
	return nil
}

func (t *tracker) OnDeltaStreamClosed(id int64, node *core.Node) {
	t.mu.Lock()
	st, ok := t.streams[id]
	delete(t.streams, id)
	t.mu.Unlock()
	if !ok {
		return
	}
	t.metrics.clients.Dec()
	t.log.Info("xds client disconnected", zap.Int64("stream", id), zap.String("node", node.GetId()),
		zap.String("peer", st.status.Peer))
}

func (t *tracker) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return nil
	}
	if n := req.GetNode(); n != nil && st.status.NodeID == "" {
		st.status.NodeID = n.GetId()
		st.status.Cluster = n.GetCluster()
		st.status.Metadata = nodeMetadata(n.GetMetadata())
		t.log.Info("xds client connected", zap.Int64("stream", id), zap.String("node", n.GetId()),
			zap.String("peer", st.status.Peer), zap.String("identity", st.status.Identity))
	}
	ts, ok := st.types[req.GetTypeUrl()]
	if !ok {
		ts = &typeState{TypeStatus: TypeStatus{TypeURL: req.GetTypeUrl()}, names: map[string]struct{}{}, pending: map[string]string{}}
		st.types[req.GetTypeUrl()] = ts
		// Legacy wildcard: the first request of a type names no resource.
		ts.Wildcard = len(req.GetResourceNamesSubscribe()) == 0
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		if n == "*" {
			ts.Wildcard = true
		} else {
			ts.names[n] = struct{}{}
		}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == "*" {
			ts.Wildcard = false
		} else {
			delete(ts.names, n)
		}
	}
	ts.SubscribedNames = len(ts.names)

	nonce := req.GetResponseNonce()
	if nonce == "" {
		return nil
	}
	version, pending := ts.pending[nonce]
	delete(ts.pending, nonce)
	if req.GetErrorDetail() == nil {
		if pending {
			ts.LastAckedNonce, ts.LastAckedVersion = nonce, version
		}
		return nil
	}
	if !pending {
		// Already counted (a repeated NACK) or unknown nonce: do not log again.
		return nil
	}
	ts.NACKs++
	st.status.NACKs++
	ts.LastNACK = &NACKStatus{Nonce: nonce, Version: version, Error: req.GetErrorDetail().GetMessage(), Time: time.Now()}
	t.metrics.rejects.WithLabelValues(pkgxds.ShortType(req.GetTypeUrl())).Inc()
	t.log.Warn("xds config rejected by client", zap.Int64("stream", id), zap.String("node", st.status.NodeID),
		zap.String("type", pkgxds.ShortType(req.GetTypeUrl())), zap.String("version", version),
		zap.String("nonce", nonce), zap.String("error", req.GetErrorDetail().GetMessage()))
	return nil
}

func (t *tracker) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	typ := resp.GetTypeUrl()
	now := time.Now()
	short := pkgxds.ShortType(typ)
	t.metrics.pushes.WithLabelValues(short).Inc()

	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.streams[id]
	if !ok {
		return
	}
	ts, ok := st.types[typ]
	if !ok {
		ts = &typeState{TypeStatus: TypeStatus{TypeURL: typ}, names: map[string]struct{}{}, pending: map[string]string{}}
		st.types[typ] = ts
	}
	// The first response of a stream answers the subscription, not a change.
	if ts.Responses > 0 {
		if at, ok := t.changedAt(typ, resp.GetSystemVersionInfo()); ok {
			t.metrics.pushTime.WithLabelValues(short).Observe(now.Sub(at).Seconds())
		}
	}
	ts.Responses++
	ts.ResourcesSent += len(resp.GetResources())
	ts.LastSentNonce = resp.GetNonce()
	ts.LastSentVersion = resp.GetSystemVersionInfo()
	ts.LastSentTime = now
	if len(ts.pending) >= maxPending {
		clear(ts.pending) // a client that never answers; keep memory bounded
	}
	ts.pending[resp.GetNonce()] = resp.GetSystemVersionInfo()
}

func (t *tracker) snapshot() []ConnectionStatus {
	t.mu.Lock()
	out := make([]ConnectionStatus, 0, len(t.streams))
	for _, st := range t.streams {
		cs := st.status
		cs.Types = make([]TypeStatus, 0, len(st.types))
		for _, ts := range st.types {
			s := ts.TypeStatus
			if s.LastNACK != nil {
				n := *s.LastNACK
				s.LastNACK = &n
			}
			s.Sync = syncState(s)
			cs.Types = append(cs.Types, s)
		}
		sort.Slice(cs.Types, func(i, j int) bool { return cs.Types[i].TypeURL < cs.Types[j].TypeURL })
		out = append(out, cs)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].ID < out[j].ID
	})
	return out
}
