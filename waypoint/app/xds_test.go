package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/pkg/xds"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

const testToken = "test-token"

// istiod is a stand-in for istiod-lite on loopback over TLS: a
// go-control-plane delta ADS server (one LinearCache per waypoint type) and
// an IstioCertificateService signing with ca.
type istiod struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca      *certs.CA
	addr    string
	caches  map[string]*cachev3.LinearCache
	nodes   chan *corev3.Node
	auth    chan string // authorization of xDS streams
	certFor chan string
	gs      *grpc.Server
	cancel  context.CancelFunc
	done    chan struct{}
}

func startIstiod(t *testing.T, ca *certs.CA, initial map[string]map[string]types.Resource) *istiod {
	t.Helper()
	serving, err := ca.IssueServing([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	s := &istiod{ca: ca, addr: fmt.Sprintf("localhost:%d", addrOf(ln).Port()), caches: map[string]*cachev3.LinearCache{},
		nodes: make(chan *corev3.Node, 16), auth: make(chan string, 16), certFor: make(chan string, 16), done: make(chan struct{})}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cachev3.Cache{},
	}
	for _, typ := range xds.WaypointTypes {
		c := cachev3.NewLinearCache(typ, cachev3.WithInitialResources(initial[typ]))
		s.caches[typ] = c
		mux.Caches[typ] = c
	}
	cb := serverv3.CallbackFuncs{
		DeltaStreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			send(s.auth, fmt.Sprint(md.Get("authorization")))
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
			if r.GetNode() != nil {
				send(s.nodes, proto.Clone(r.GetNode()).(*corev3.Node))
			}
			return nil
		},
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	s.gs = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*serving}, MinVersion: tls.VersionTLS12})))
	discovery.RegisterAggregatedDiscoveryServiceServer(s.gs, serverv3.NewServer(ctx, mux, cb))
	pb.RegisterIstioCertificateServiceServer(s.gs, s)
	go func() {
		defer close(s.done)
		s.gs.Serve(ln)
	}()
	t.Cleanup(func() {
		s.cancel()
		s.gs.Stop()
		<-s.done
	})
	return s
}

func send[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// CreateCertificate signs the CSR for the requested identity when the
// caller presents the test token.
func (s *istiod) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testToken {
		return nil, status.Errorf(codes.Unauthenticated, "authorization %q", got)
	}
	want := req.GetMetadata().GetFields()[identity.ImpersonatedIdentityKey].GetStringValue()
	send(s.certFor, want)
	id, err := spiffe.Parse(want)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	der, err := certs.ParseCSRPEM([]byte(req.GetCsr()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := s.ca.SignCSR(der, id, time.Hour)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &pb.IstioCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(certs.EncodeCertsPEM([]*x509.Certificate{c})))
	}
	return resp, nil
}

// renamed copies a listener under name with its RDS references renamed by f.
func renamed(t *testing.T, l *listenerv3.Listener, name string, f func(string) string) *listenerv3.Listener {
	t.Helper()
	l = proto.Clone(l).(*listenerv3.Listener)
	l.Name = name
	for _, fc := range l.FilterChains {
		for _, flt := range fc.Filters {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := flt.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			hcm.GetRds().RouteConfigName = f(hcm.GetRds().GetRouteConfigName())
			a, err := anypb.New(hcm)
			if err != nil {
				t.Fatal(err)
			}
			flt.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return l
}

// prefixed serves r as istiod-lite does for the waypoint prefix, plus
// another waypoint's listener and routes on the same port (which the store
// would refuse next to ours: two chains for port 9080).
func prefixed(t *testing.T, r state.Resources, prefix, other string) map[string]map[string]types.Resource {
	out := map[string]map[string]types.Resource{}
	for _, typ := range xds.WaypointTypes {
		out[typ] = map[string]types.Resource{}
	}
	for _, p := range []string{prefix, other} {
		for _, l := range r.Listeners {
			out[xds.ListenerType][p+l.Name] = renamed(t, l, p+l.Name, func(s string) string { return p + s })
		}
		for _, rc := range r.Routes {
			rc = proto.Clone(rc).(*routev3.RouteConfiguration)
			rc.Name = p + rc.Name
			out[xds.RouteType][rc.Name] = rc
		}
	}
	for _, c := range r.Clusters {
		out[xds.ClusterType][c.Name] = c
	}
	for _, e := range r.Endpoints {
		out[xds.EndpointType][e.ClusterName] = e
	}
	return out
}

// TestXDSMode runs the waypoint against an in-process control plane over
// TLS: certificate from the CA service, configuration over delta ADS with
// other waypoints' resources mixed in, then a refused update (NACK) and a
// removal.
func TestXDSMode(t *testing.T) {
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	res := statetest.MustLoad(t, "weights")
	pods := newPods(t, res, map[string]http.Handler{"10.244.1.11": named("v1"), "10.244.2.12": named("v2")})
	pods.ca.Store(ca)
	cp := startIstiod(t, ca, prefixed(t, res, "ns1/waypoint/", "ns2/other/"))

	dir := t.TempDir()
	root := writeFile(t, dir, "root-cert.pem", string(ca.RootsPEM()))
	token := writeFile(t, dir, "istio-token", testToken+"\n")
	cfg := parse(t, "--xds-address="+cp.addr, "--name=waypoint", "--namespace=ns1", "--root-cert="+root, "--token-file="+token)
	a := start(t, cfg)
	waitReady(t, a.App)

	if got, want := <-cp.certFor, "spiffe://cluster.local/ns/ns1/sa/waypoint"; got != want {
		t.Errorf("certificate requested for %s, want %s", got, want)
	}
	if got := <-cp.auth; got != "[Bearer "+testToken+"]" {
		t.Errorf("xDS authorization = %s", got)
	}
	node := <-cp.nodes
	if node.GetId() != "router~0.0.0.0~waypoint.ns1~ns1.svc.cluster.local" || node.GetMetadata().GetFields()["NAMESPACE"].GetStringValue() != "ns1" {
		t.Errorf("node = %v", node)
	}

	snap := a.Snapshot()
	if len(snap.Routes) != 1 || snap.Routes["9080"] == nil || snap.Chain(9080) == nil || snap.Chain(9080).RouteName != "9080" {
		t.Fatalf("snapshot routes %v, chain %+v: want only route 9080 used by the 9080 chain", keys(snap.Routes), snap.Chain(9080))
	}
	expectBody(t, viaWaypoint(t, ca, a.Addrs().HBONE, "10.96.0.21:9080"), "v1")

	// A listener the store refuses is NACKed; the old configuration stays.
	bad := renamed(t, res.Listeners[0], "ns1/waypoint/waypoint", func(string) string { return "ns1/waypoint/9080" })
	hcm := &hcmv3.HttpConnectionManager{}
	if err := bad.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.RouteSpecifier = nil // no RDS: unsupported
	anyHCM, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	bad.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anyHCM}
	if err := cp.caches[xds.ListenerType].UpdateResource("ns1/waypoint/waypoint", bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listener NACK", func() bool { return a.xds.State().Types[xds.ListenerType].NACKs > 0 })
	if a.Snapshot() != snap {
		t.Errorf("snapshot changed by a refused update")
	}
	expectBody(t, viaWaypoint(t, ca, a.Addrs().HBONE, "10.96.0.22:9080"), "v2")

	// Removing our route configuration reaches the store; removing another
	// waypoint's does not matter.
	if err := cp.caches[xds.RouteType].UpdateResources(nil, []string{"ns2/other/9080", "ns1/waypoint/9080"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route removed", func() bool { return len(a.Snapshot().Routes) == 0 })
	code, body := httpGet(t, "http://"+a.Addrs().Admin.String()+"/config_dump?section=routes")
	if code != http.StatusOK || body != "{\n  \"routes\": {\n    \"count\": 0,\n    \"names\": []\n  }\n}\n" {
		t.Errorf("/config_dump?section=routes = %d %q", code, body)
	}
}

func TestXDSNotReadyWithoutControlPlane(t *testing.T) {
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the waypoint must stay unready
	root := writeFile(t, t.TempDir(), "root-cert.pem", string(ca.RootsPEM()))
	a := start(t, parse(t, "--xds-address="+addr, "--root-cert="+root, "--name=wp", "--namespace=ns", "--ca=local"))
	waitFor(t, "certificate", func() bool { return a.certReady() == nil })
	err = a.Ready()
	if err == nil {
		t.Fatal("ready without xDS")
	}
	code, body := httpGet(t, "http://"+a.Addrs().Ready.String()+"/healthz/ready")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/healthz/ready = %d %s, want 503 (%v)", code, body, err)
	}
}

func expectBody(t *testing.T, c *http.Client, want string) {
	t.Helper()
	res, err := c.Get("http://reviews/")
	if err != nil {
		t.Fatalf("GET via waypoint: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK || string(b) != want {
		t.Fatalf("GET via waypoint = %d %q (%v), want 200 %q", res.StatusCode, b, err, want)
	}
}

// waitFor polls cond (liveness bound only).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	return out
}
