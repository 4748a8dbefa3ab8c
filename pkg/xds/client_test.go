package xds

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// update is one Handler call.
type update struct {
	typeURL string
	upserts map[string]proto.Message
	removes []string
}

// recorder is a Handler that reports every call on a channel and can be
// told to reject responses.
type recorder struct {
	ch     chan update
	mu     sync.Mutex
	reject func(update) error
}

func newRecorder() *recorder { return &recorder{ch: make(chan update, 64)} }

func (r *recorder) Update(typeURL string, upserts map[string]proto.Message, removes []string, _ string) error {
	u := update{typeURL: typeURL, upserts: upserts, removes: removes}
	r.mu.Lock()
	reject := r.reject
	r.mu.Unlock()
	var err error
	if reject != nil {
		err = reject(u)
	}
	r.ch <- u
	return err
}

func (r *recorder) next(t *testing.T) update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(10 * time.Second): // liveness deadline only
		t.Fatal("no handler call within 10s")
		return update{}
	}
}

// testServer is a bare go-control-plane delta ADS server on loopback.
type testServer struct {
	addr   string
	caches map[string]*cachev3.LinearCache
	gs     *grpc.Server
	cancel context.CancelFunc
	reqs   chan *discovery.DeltaDiscoveryRequest
	md     chan metadata.MD
	done   chan struct{}
}

func startServer(t *testing.T, addr string, initial map[string]map[string]types.Resource) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{
		addr:   lis.Addr().String(),
		caches: map[string]*cachev3.LinearCache{},
		reqs:   make(chan *discovery.DeltaDiscoveryRequest, 256),
		md:     make(chan metadata.MD, 16),
		done:   make(chan struct{}),
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cachev3.Cache{},
	}
	for _, typ := range []string{AddressType, AuthorizationType} {
		c := cachev3.NewLinearCache(typ, cachev3.WithInitialResources(initial[typ]))
		ts.caches[typ] = c
		mux.Caches[typ] = c
	}
	cb := serverv3.CallbackFuncs{
		DeltaStreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			select {
			case ts.md <- md:
			default:
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
			select {
			case ts.reqs <- proto.Clone(r).(*discovery.DeltaDiscoveryRequest):
			default:
			}
			return nil
		},
	}
	var ctx context.Context
	ctx, ts.cancel = context.WithCancel(context.Background())
	ts.gs = grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(ts.gs, serverv3.NewServer(ctx, mux, cb))
	go func() {
		defer close(ts.done)
		_ = ts.gs.Serve(lis)
	}()
	return ts
}

func (ts *testServer) stop() {
	ts.cancel()
	ts.gs.Stop()
	<-ts.done
}

// nackFor waits for a request carrying an error_detail.
func (ts *testServer) nackFor(t *testing.T) *discovery.DeltaDiscoveryRequest {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-ts.reqs:
			if r.GetErrorDetail() != nil {
				return r
			}
		case <-deadline:
			t.Fatal("no NACK within 10s")
		}
	}
}

func workload(name, ip string) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: &workloadapi.Workload{
		Uid: "cluster/" + name, Name: name, Namespace: "default", Addresses: [][]byte{net.ParseIP(ip).To4()},
		ServiceAccount: "default", TrustDomain: "cluster.local", Node: "node-a",
	}}}
}

func authz(name string, action security.Action) *security.Authorization {
	return &security.Authorization{Name: name, Namespace: "default", Scope: security.Scope_NAMESPACE, Action: action}
}

func names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitState polls the client state until cond holds (liveness bound only):
// handlers run before the client records the state it reports.
func waitState(t *testing.T, c *Client, what string, cond func(State) bool) State {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		st := c.State()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("client state never reached %s: %+v", what, st)
		}
	}
}

type running struct {
	c    *Client
	stop func()
}

func runClient(t *testing.T, cfg Config, h map[string]Handler) running {
	t.Helper()
	c, err := New(zaptest.NewLogger(t), cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return running{c: c, stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil on cancel", err)
		}
	}}
}

func TestClientSubscribeUpdateAndRemove(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", map[string]map[string]types.Resource{
		AddressType:       {"default/a": workload("a", "10.0.0.1"), "default/b": workload("b", "10.0.0.2")},
		AuthorizationType: {"default/allow": authz("allow", security.Action_ALLOW)},
	})
	defer srv.stop()
	addrs, pols := newRecorder(), newRecorder()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl := runClient(t, Config{
		Address: srv.addr, NodeID: "ztunnel~10.0.0.9~zt.istio-system~istio-system.svc.cluster.local",
		NodeMetadata: map[string]string{"NODE_NAME": "node-a"}, TokenFile: tok,
		Types: ZtunnelTypes, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, map[string]Handler{AddressType: addrs, AuthorizationType: pols})
	defer cl.stop()

	if md := <-srv.md; len(md.Get("authorization")) != 1 || md.Get("authorization")[0] != "Bearer secret-token" {
		t.Errorf("authorization metadata = %q, want [Bearer secret-token]", md.Get("authorization"))
	}
	u := addrs.next(t)
	if got := names(u.upserts); len(got) != 2 || got[0] != "default/a" || got[1] != "default/b" {
		t.Fatalf("initial Address upserts = %v, want [default/a default/b]", got)
	}
	if w := u.upserts["default/a"].(*workloadapi.Address).GetWorkload(); w.GetName() != "a" {
		t.Errorf("decoded workload = %v, want name a", w)
	}
	if p := pols.next(t); len(p.upserts) != 1 {
		t.Fatalf("initial Authorization upserts = %v, want 1", names(p.upserts))
	}

	if err := srv.caches[AddressType].UpdateResources(map[string]types.Resource{"default/a": workload("a", "10.0.0.11")}, []string{"default/b"}); err != nil {
		t.Fatal(err)
	}
	u = addrs.next(t)
	if got := names(u.upserts); len(got) != 1 || got[0] != "default/a" {
		t.Errorf("upserts = %v, want [default/a]", got)
	}
	if len(u.removes) != 1 || u.removes[0] != "default/b" {
		t.Errorf("removes = %v, want [default/b]", u.removes)
	}
	waitState(t, cl.c, "connected, synced, 1 address", func(st State) bool {
		return st.Connected && st.Synced() && st.Types[AddressType].Resources == 1
	})
}

func TestClientNACKKeepsLastGoodState(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", map[string]map[string]types.Resource{
		AddressType: {"default/a": workload("a", "10.0.0.1")},
	})
	defer srv.stop()
	addrs := newRecorder()
	addrs.reject = func(u update) error {
		if _, bad := u.upserts["default/bad"]; bad {
			return errors.New("bad workload")
		}
		return nil
	}
	cl := runClient(t, Config{Address: srv.addr, NodeID: "n", Types: []string{AddressType}},
		map[string]Handler{AddressType: addrs})
	defer cl.stop()
	addrs.next(t)
	good := waitState(t, cl.c, "synced", func(st State) bool { return st.Types[AddressType].Synced }).Types[AddressType]

	if err := srv.caches[AddressType].UpdateResource("default/bad", workload("bad", "10.0.0.66")); err != nil {
		t.Fatal(err)
	}
	addrs.next(t)
	nack := srv.nackFor(t)
	if nack.GetErrorDetail().GetMessage() == "" {
		t.Error("NACK without message")
	}
	st := cl.c.State().Types[AddressType]
	if st.NACKs != 1 || st.Version != good.Version || st.Resources != 1 {
		t.Errorf("after NACK state = %+v, want 1 NACK, version %q, 1 resource", st, good.Version)
	}

	if err := srv.caches[AddressType].UpdateResource("default/c", workload("c", "10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	u := addrs.next(t)
	if _, ok := u.upserts["default/c"]; !ok {
		t.Fatalf("next update = %v, want default/c", names(u.upserts))
	}
	st = waitState(t, cl.c, "next version", func(st State) bool { return st.Types[AddressType].Version != good.Version }).Types[AddressType]
	if st.Resources != 2 || st.NACKs != 1 {
		t.Errorf("after good update state = %+v, want 2 resources and still 1 NACK", st)
	}
}

func TestClientReconnectSendsHeldVersions(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", map[string]map[string]types.Resource{
		AddressType: {"default/a": workload("a", "10.0.0.1"), "default/b": workload("b", "10.0.0.2"), "default/c": workload("c", "10.0.0.3")},
	})
	addrs := newRecorder()
	cl := runClient(t, Config{Address: srv.addr, NodeID: "n", Types: []string{AddressType},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		map[string]Handler{AddressType: addrs})
	defer cl.stop()
	if u := addrs.next(t); len(u.upserts) != 3 {
		t.Fatalf("initial upserts = %v, want 3", names(u.upserts))
	}
	addr := srv.addr
	srv.stop()
	// Liveness wait for the client to notice; not a timing assertion.
	for deadline := time.Now().Add(10 * time.Second); cl.c.State().Connected; {
		if time.Now().After(deadline) {
			t.Fatal("client still reports connected 10s after the server stopped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := cl.c.State(); st.LastError == "" || st.Types[AddressType].Resources != 3 {
		t.Errorf("disconnected state = %+v, want an error and 3 resources kept", st)
	}

	srv2 := startServer(t, addr, map[string]map[string]types.Resource{
		AddressType: {"default/a": workload("a", "10.0.0.1"), "default/b": workload("b", "10.0.0.22"), "default/d": workload("d", "10.0.0.4")},
	})
	defer srv2.stop()
	u := addrs.next(t)
	if got := names(u.upserts); len(got) != 2 || got[0] != "default/b" || got[1] != "default/d" {
		t.Errorf("upserts after reconnect = %v, want only the changed [default/b default/d]", got)
	}
	if len(u.removes) != 1 || u.removes[0] != "default/c" {
		t.Errorf("removes after reconnect = %v, want [default/c]", u.removes)
	}
	waitState(t, cl.c, "connected with 3 resources", func(st State) bool {
		return st.Connected && st.Types[AddressType].Resources == 3 && st.Types[AddressType].Version != ""
	})
}

func TestNewValidates(t *testing.T) {
	h := HandlerFunc(func(string, map[string]proto.Message, []string, string) error { return nil })
	for _, tc := range []struct {
		name     string
		cfg      Config
		handlers map[string]Handler
	}{
		{"no address", Config{Types: []string{AddressType}}, map[string]Handler{AddressType: h}},
		{"no types", Config{Address: "x:1"}, nil},
		{"type without handler", Config{Address: "x:1", Types: []string{AddressType}}, map[string]Handler{AuthorizationType: h}},
		{"unresolvable type", Config{Address: "x:1"}, map[string]Handler{"type.googleapis.com/no.Such": h}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(zaptest.NewLogger(t), tc.cfg, tc.handlers); err == nil {
				t.Error("New succeeded, want error")
			}
		})
	}
	c, err := New(zaptest.NewLogger(t), Config{Address: "x:1", Prototypes: map[string]proto.Message{"type.googleapis.com/custom": &workloadapi.Address{}}},
		map[string]Handler{"type.googleapis.com/custom": h})
	if err != nil {
		t.Fatalf("New with a prototype: %v", err)
	}
	if st := c.State(); st.Connected || st.Synced() || len(st.Types) != 1 {
		t.Errorf("fresh state = %+v, want 1 unsynced type", st)
	}
}
