package xds

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// liveness bounds every wait in these tests; it is a hang guard, not a
// timing assertion.
const liveness = 20 * time.Second

func workloadName(i int) string { return fmt.Sprintf("Kubernetes//Pod/ns-%d/w-%d", i%50, i) }

func workloadAddr(i int, rev string) *workloadapi.Address {
	ns := fmt.Sprintf("ns-%d", i%50)
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: &workloadapi.Workload{
		Uid:            workloadName(i),
		Name:           fmt.Sprintf("w-%d", i),
		Namespace:      ns,
		Addresses:      [][]byte{{10, byte(i >> 16), byte(i >> 8), byte(i)}},
		Network:        "",
		TunnelProtocol: workloadapi.TunnelProtocol_HBONE,
		TrustDomain:    "cluster.local",
		ServiceAccount: "sa-" + rev,
		Node:           fmt.Sprintf("node-%d", i%20),
		CanonicalName:  fmt.Sprintf("app-%d", i%1000),
		WorkloadName:   fmt.Sprintf("app-%d", i%1000),
		WorkloadType:   workloadapi.WorkloadType_DEPLOYMENT,
		Status:         workloadapi.WorkloadStatus_HEALTHY,
		ClusterId:      "Kubernetes",
		Services: map[string]*workloadapi.PortList{
			fmt.Sprintf("%s/svc-%d.%s.svc.cluster.local", ns, i%1000, ns): {Ports: []*workloadapi.Port{{ServicePort: 80, TargetPort: 8080}}},
		},
	}}}
}

func serviceName(i int) string {
	ns := fmt.Sprintf("ns-%d", i%50)
	return fmt.Sprintf("%s/svc-%d.%s.svc.cluster.local", ns, i, ns)
}

func serviceAddr(i int) *workloadapi.Address {
	ns := fmt.Sprintf("ns-%d", i%50)
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: &workloadapi.Service{
		Name:      fmt.Sprintf("svc-%d", i),
		Namespace: ns,
		Hostname:  fmt.Sprintf("svc-%d.%s.svc.cluster.local", i, ns),
		Addresses: []*workloadapi.NetworkAddress{{Address: []byte{10, 96, byte(i >> 8), byte(i)}}},
		Ports:     []*workloadapi.Port{{ServicePort: 80, TargetPort: 8080}},
	}}}
}

// addresses builds nw workloads and ns services.
func addresses(nw, ns int) map[string]proto.Message {
	out := make(map[string]proto.Message, nw+ns)
	for i := range nw {
		out[workloadName(i)] = workloadAddr(i, "a")
	}
	for i := range ns {
		out[serviceName(i)] = serviceAddr(i)
	}
	return out
}

func authzPolicy(name string, action security.Action) *security.Authorization {
	return &security.Authorization{Name: name, Namespace: "default", Scope: security.Scope_NAMESPACE, Action: action,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{Namespaces: []*security.StringMatch{{MatchType: &security.StringMatch_Exact{Exact: "default"}}}}}}}}}}
}

// harness is an xDS Server served by Serve on a loopback plaintext listener.
type harness struct {
	srv  *Server
	reg  *prometheus.Registry
	addr string
	stop func()
}

// startHarness serves a new Server on addr; setup (optional) runs before it
// is marked ready.
func startHarness(tb testing.TB, addr string, logger *zap.Logger, setup func(*Server)) *harness {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("listen %s: %v", addr, err)
	}
	reg := prometheus.NewRegistry()
	srv := New(logger, Options{Registerer: reg, WaitForReady: true})
	if setup != nil {
		setup(srv)
	}
	srv.MarkReady()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, logger, ServeConfig{PlaintextListener: lis, Register: srv.Register, ShutdownGrace: time.Second})
	}()
	return &harness{srv: srv, reg: reg, addr: lis.Addr().String(), stop: func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	}}
}

// update is one Handler call.
type update struct {
	at      time.Time
	upserts map[string]proto.Message
	removes []string
	version string
}

// recorder is a pkgxds.Handler reporting every call on a channel; reject,
// if set, makes it return an error.
type recorder struct {
	ch     chan update
	mu     sync.Mutex
	reject func(update) error
}

func newRecorder() *recorder { return &recorder{ch: make(chan update, 1024)} }

func (r *recorder) Update(_ string, upserts map[string]proto.Message, removes []string, version string) error {
	u := update{at: time.Now(), upserts: upserts, removes: removes, version: version}
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

func (r *recorder) next(tb testing.TB) update {
	tb.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(liveness):
		tb.Fatal("no handler call in time")
		return update{}
	}
}

// client is a running pkg/xds client with one recorder per ztunnel type.
type client struct {
	c            *pkgxds.Client
	addrs, authz *recorder
	stop         func()
}

func startClient(tb testing.TB, logger *zap.Logger, cfg pkgxds.Config) *client {
	tb.Helper()
	cl := &client{addrs: newRecorder(), authz: newRecorder()}
	if cfg.Types == nil {
		cfg.Types = pkgxds.ZtunnelTypes
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	}
	handlers := map[string]pkgxds.Handler{pkgxds.AddressType: cl.addrs, pkgxds.AuthorizationType: cl.authz}
	for _, t := range cfg.Types {
		if handlers[t] == nil {
			handlers[t] = newRecorder()
		}
	}
	c, err := pkgxds.New(logger, cfg, handlers)
	if err != nil {
		tb.Fatalf("pkgxds.New: %v", err)
	}
	cl.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cl.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("client Run: %v", err)
		}
	}
	return cl
}

// eventually polls cond until it holds, failing after the liveness bound.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(liveness); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// metricValue sums the counter/gauge values of c (one child of a vec, a
// gauge, ...); for histograms it returns the sample count.
func metricValue(tb testing.TB, c prometheus.Collector) float64 {
	tb.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			tb.Fatalf("read metric: %v", err)
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Gauge != nil:
			sum += d.Gauge.GetValue()
		case d.Histogram != nil:
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}
