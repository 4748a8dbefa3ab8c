package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
)

// Handler receives the changes of one type URL. upserts are the resources
// added or changed, decoded into the Go type of the type URL; removes the
// names deleted; version the server's system version of the response (for
// display only). Returning an error rejects the whole response (NACK): the
// handler must then leave its state as it was.
//
// Update is called from the client's single receive goroutine, never
// concurrently, and never while the server is unreachable.
type Handler interface {
	Update(typeURL string, upserts map[string]proto.Message, removes []string, version string) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(typeURL string, upserts map[string]proto.Message, removes []string, version string) error

// Update calls f.
func (f HandlerFunc) Update(typeURL string, upserts map[string]proto.Message, removes []string, version string) error {
	return f(typeURL, upserts, removes, version)
}

// Config configures a Client.
type Config struct {
	// Address is the host:port of istiod-lite (15012 with TLS, 15010 plaintext).
	Address string
	// TLS is the client TLS configuration; nil means plaintext.
	TLS *tls.Config
	// TokenFile, if set, holds a bearer token (projected ServiceAccount
	// token) re-read on every connect and sent as "authorization: Bearer".
	TokenFile string
	// NodeID is the xDS node id, e.g. "ztunnel~10.0.0.1~ztunnel-abcde.istio-system~istio-system.svc.cluster.local".
	NodeID string
	// NodeMetadata is sent as node metadata (NODE_NAME, NAMESPACE, CLUSTER_ID, ...).
	NodeMetadata map[string]string
	// Types lists the type URLs to subscribe to (wildcard), each with a handler.
	Types []string
	// Prototypes optionally maps a type URL to the Go message its resources
	// decode into. Types without a prototype are resolved through the global
	// protobuf registry (any linked generated type works).
	Prototypes map[string]proto.Message
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 200ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// MaxRecvMsgSize bounds a single response (default 256 MiB: a full
	// Address state of a large cluster comes in one response).
	MaxRecvMsgSize int
}

const (
	defaultMinBackoff     = 200 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultMaxRecvMsgSize = 256 << 20
)

// State is a snapshot of the client's connection and per-type sync state.
type State struct {
	Address        string               `json:"address"`
	Connected      bool                 `json:"connected"`
	ConnectedSince time.Time            `json:"connectedSince,omitzero"`
	LastError      string               `json:"lastError,omitempty"`
	LastErrorTime  time.Time            `json:"lastErrorTime,omitzero"`
	Types          map[string]TypeState `json:"types"`
}

// TypeState is the sync state of one type URL.
type TypeState struct {
	// Synced is true once a response of this type has been accepted (since start).
	Synced bool `json:"synced"`
	// Version is the system version of the last accepted response.
	Version string `json:"version,omitempty"`
	// Nonce is the nonce of the last accepted response.
	Nonce string `json:"nonce,omitempty"`
	// LastUpdate is when the last response was accepted.
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
	// Resources is the number of resources held.
	Resources int `json:"resources"`
	// NACKs counts rejected responses; LastNACK is the last rejection's error.
	NACKs    int    `json:"nacks"`
	LastNACK string `json:"lastNack,omitempty"`
}

// Synced reports whether every subscribed type has been received once.
func (s State) Synced() bool {
	for _, t := range s.Types {
		if !t.Synced {
			return false
		}
	}
	return len(s.Types) > 0
}

// Client is a delta ADS client. Create it with New and run it with Run.
type Client struct {
	log      *zap.Logger
	cfg      Config
	handlers map[string]Handler
	protos   map[string]protoreflect.MessageType

	// held maps type URL → resource name → version of what the handlers
	// accepted. Only the Run goroutine touches it.
	held map[string]map[string]string

	mu    sync.Mutex
	state State
}

// New builds a client; handlers maps every type URL of cfg.Types to its
// handler. If cfg.Types is empty the handlers' type URLs are used.
func New(logger *zap.Logger, cfg Config, handlers map[string]Handler) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("xds client: empty server address")
	}
	if len(cfg.Types) == 0 {
		cfg.Types = make([]string, 0, len(handlers))
		for t := range handlers {
			cfg.Types = append(cfg.Types, t)
		}
		sort.Strings(cfg.Types)
	}
	if len(cfg.Types) == 0 {
		return nil, errors.New("xds client: no type URLs to subscribe to")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = defaultMaxRecvMsgSize
	}
	c := &Client{
		log:      logger,
		cfg:      cfg,
		handlers: make(map[string]Handler, len(cfg.Types)),
		protos:   make(map[string]protoreflect.MessageType, len(cfg.Types)),
		held:     make(map[string]map[string]string, len(cfg.Types)),
		state:    State{Address: cfg.Address, Types: make(map[string]TypeState, len(cfg.Types))},
	}
	for _, t := range cfg.Types {
		h, ok := handlers[t]
		if !ok || h == nil {
			return nil, fmt.Errorf("xds client: no handler for type %s", t)
		}
		mt, err := messageType(t, cfg.Prototypes[t])
		if err != nil {
			return nil, err
		}
		c.handlers[t] = h
		c.protos[t] = mt
		c.held[t] = map[string]string{}
		c.state.Types[t] = TypeState{}
	}
	return c, nil
}

// messageType resolves the Go type resources of typeURL decode into.
func messageType(typeURL string, proto proto.Message) (protoreflect.MessageType, error) {
	if proto != nil {
		return proto.ProtoReflect().Type(), nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("xds client: resolve message type of %s (import its generated package or set Config.Prototypes): %w", typeURL, err)
	}
	return mt, nil
}

// State returns a copy of the current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.Types = maps.Clone(c.state.Types)
	return s
}

// Run connects and keeps the subscription alive until ctx is cancelled, then
// returns nil after every goroutine it started has ended.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		gotResponse, err := c.runStream(ctx)
		if ctx.Err() != nil {
			c.setDisconnected(nil)
			return nil
		}
		c.setDisconnected(err)
		if gotResponse {
			attempt = 0
		}
		wait := backoff(attempt, c.cfg.MinBackoff, c.cfg.MaxBackoff, rand.Float64())
		attempt++
		c.log.Warn("xds stream ended, reconnecting",
			zap.String("address", c.cfg.Address), zap.Error(err), zap.Duration("backoff", wait), zap.Int("attempt", attempt))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runStream runs one connection and stream until it fails. gotResponse
// reports whether the server answered at all (then backoff restarts).
func (c *Client) runStream(ctx context.Context) (gotResponse bool, err error) {
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	conn, err := grpc.NewClient(c.cfg.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxRecvMsgSize)),
	)
	if err != nil {
		return false, fmt.Errorf("dial xds server %s: %w", c.cfg.Address, err)
	}
	defer conn.Close()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.cfg.TokenFile != "" {
		tok, err := os.ReadFile(c.cfg.TokenFile)
		if err != nil {
			return false, fmt.Errorf("read xds bearer token file %s: %w", c.cfg.TokenFile, err)
		}
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open delta ADS stream to %s: %w", c.cfg.Address, err)
	}
	for i, t := range c.cfg.Types {
		if err := stream.Send(c.subscribeRequest(t, i == 0)); err != nil {
			return false, fmt.Errorf("subscribe to %s at %s: %w", ShortType(t), c.cfg.Address, err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return gotResponse, fmt.Errorf("receive from xds server %s (is istiod-lite running and reachable?): %w", c.cfg.Address, err)
		}
		if !gotResponse {
			gotResponse = true
			c.setConnected()
			c.log.Info("xds connected", zap.String("address", c.cfg.Address))
		}
		if err := stream.Send(c.handle(resp)); err != nil {
			return gotResponse, fmt.Errorf("send ack to xds server %s: %w", c.cfg.Address, err)
		}
	}
}

// subscribeRequest is the first request of a type on a new stream: an
// explicit wildcard subscription with the versions the client already holds.
func (c *Client) subscribeRequest(typeURL string, withNode bool) *discovery.DeltaDiscoveryRequest {
	req := &discovery.DeltaDiscoveryRequest{
		TypeUrl:                 typeURL,
		ResourceNamesSubscribe:  []string{"*"},
		InitialResourceVersions: maps.Clone(c.held[typeURL]),
	}
	if withNode {
		req.Node = c.node()
	}
	return req
}

func (c *Client) node() *core.Node {
	n := &core.Node{Id: c.cfg.NodeID}
	if len(c.cfg.NodeMetadata) > 0 {
		fields := make(map[string]*structpb.Value, len(c.cfg.NodeMetadata))
		for k, v := range c.cfg.NodeMetadata {
			fields[k] = structpb.NewStringValue(v)
		}
		n.Metadata = &structpb.Struct{Fields: fields}
	}
	return n
}

// handle applies one response and returns the ACK or NACK to send.
func (c *Client) handle(resp *discovery.DeltaDiscoveryResponse) *discovery.DeltaDiscoveryRequest {
	typ := resp.GetTypeUrl()
	reply := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
	err := c.apply(resp)
	if err != nil {
		c.log.Warn("xds response rejected",
			zap.String("type", ShortType(typ)), zap.String("version", resp.GetSystemVersionInfo()),
			zap.String("nonce", resp.GetNonce()), zap.Error(err))
		reply.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.state.Types[typ]
	if err != nil {
		ts.NACKs++
		ts.LastNACK = err.Error()
	} else {
		ts.Synced = true
		ts.Version = resp.GetSystemVersionInfo()
		ts.Nonce = resp.GetNonce()
		ts.LastUpdate = time.Now()
		ts.Resources = len(c.held[typ])
	}
	if _, known := c.state.Types[typ]; known {
		c.state.Types[typ] = ts
	}
	return reply
}

// apply decodes a response and hands it to the type's handler; on success
// it records the versions now held.
func (c *Client) apply(resp *discovery.DeltaDiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	h, ok := c.handlers[typ]
	if !ok {
		return fmt.Errorf("unexpected type %s: not subscribed", typ)
	}
	mt := c.protos[typ]
	upserts := make(map[string]proto.Message, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			return fmt.Errorf("resource %q has no body", r.GetName())
		}
		if got := r.GetResource().GetTypeUrl(); got != typ {
			return fmt.Errorf("resource %q has type %s in a %s response", r.GetName(), got, typ)
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(r.GetResource().GetValue(), m); err != nil {
			return fmt.Errorf("decode resource %q: %w", r.GetName(), err)
		}
		upserts[r.GetName()] = m
	}
	if err := h.Update(typ, upserts, resp.GetRemovedResources(), resp.GetSystemVersionInfo()); err != nil {
		return fmt.Errorf("apply %s version %s: %w", ShortType(typ), resp.GetSystemVersionInfo(), err)
	}
	held := c.held[typ]
	for _, r := range resp.GetResources() {
		held[r.GetName()] = r.GetVersion()
	}
	for _, name := range resp.GetRemovedResources() {
		delete(held, name)
	}
	return nil
}

func (c *Client) setConnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Connected = true
	c.state.ConnectedSince = time.Now()
}

func (c *Client) setDisconnected(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state.Connected = false
	c.state.ConnectedSince = time.Time{}
	if err != nil {
		c.state.LastError = err.Error()
		c.state.LastErrorTime = time.Now()
	}
}
