package app

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/ambient-mesh/ambient/istiod-lite/config"
	pkgkube "github.com/ambient-mesh/ambient/pkg/kube"
	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

// Scale of BenchmarkScale: 100 enrolled namespaces × (100 pods, 10
// Services, 2 AuthorizationPolicies).
const (
	scaleNamespaces = 100
	scalePodsPerNS  = 100
	scaleSvcsPerNS  = 10
	scaleClients    = 50
)

// scaleObjects are the Kubernetes objects of BenchmarkScale, shaped as a
// Deployment's pods (owner, labels, named container ports, Ready).
func scaleObjects() (kube, istio []runtime.Object) {
	yes := true
	for n := range scaleNamespaces {
		ns := fmt.Sprintf("ns-%d", n)
		kube = append(kube, ambientNamespace(ns))
		for s := range scaleSvcsPerNS {
			ip := fmt.Sprintf("10.96.%d.%d", n, s+1)
			kube = append(kube, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%d", s), Labels: map[string]string{"app": fmt.Sprintf("app-%d", s)}},
				Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Selector: map[string]string{"app": fmt.Sprintf("app-%d", s)},
					Ports: []corev1.ServicePort{
						{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
						{Name: "grpc", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
					}},
			})
		}
		for p := range scalePodsPerNS {
			app := fmt.Sprintf("app-%d", p%scaleSvcsPerNS)
			ip := fmt.Sprintf("10.%d.%d.%d", 100+n/100, n%100, p+1)
			kube = append(kube, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-7d9f8-%05d", app, p),
					Labels:          map[string]string{"app": app, "version": "v1", "pod-template-hash": "7d9f8"},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-7d9f8", UID: types.UID(fmt.Sprintf("rs-%d-%d", n, p)), Controller: &yes}}},
				Spec: corev1.PodSpec{ServiceAccountName: app, NodeName: fmt.Sprintf("node%d", p%20),
					Containers: []corev1.Container{{Name: "app", Image: "ambient/echo:dev",
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9000}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
			})
		}
		istio = append(istio,
			&securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow", Generation: 1},
				Spec: securityv1beta1.AuthorizationPolicy{
					Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "app-0"}},
					Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
						Principals: []string{"cluster.local/ns/" + ns + "/sa/client"}, IpBlocks: []string{"10.0.0.0/8"},
					}}}}},
				}},
			&securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny", Generation: 1},
				Spec: securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY,
					Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Namespaces: []string{"untrusted"}}}}}}}},
		)
	}
	return kube, istio
}

// memSample is the process's memory after a GC.
type memSample struct{ heapInuse, sys, rss uint64 }

func sampleMem(tb testing.TB) memSample {
	goruntime.GC()
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return memSample{heapInuse: ms.HeapInuse, sys: ms.Sys, rss: vmRSS(tb)}
}

// vmRSS reads VmRSS from /proc/self/status (0 where there is none).
func vmRSS(tb testing.TB) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("parse VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// delivery is one response a raw client received.
type delivery struct {
	at    time.Time
	names []string
}

// rawClient is a delta ADS stream subscribed to Addresses that ACKs every
// response and forwards the received names, without decoding the
// resources: 50 of them cost the process little beyond the server's own
// per-connection state.
type rawClient struct {
	conn       *grpc.ClientConn
	deliveries chan delivery
	done       chan struct{}
}

func dialRaw(tb testing.TB, addr string, id int) *rawClient {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	node := &core.Node{Id: fmt.Sprintf("ztunnel~10.0.0.%d~ztunnel-%d.istio-system~istio-system.svc.cluster.local", id, id)}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: pkgxds.AddressType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		tb.Fatal(err)
	}
	c := &rawClient{conn: conn, deliveries: make(chan delivery, 64), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.deliveries)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			d := delivery{at: time.Now(), names: make([]string, 0, len(resp.GetResources()))}
			for _, r := range resp.GetResources() {
				d.names = append(d.names, r.GetName())
			}
			if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
				return
			}
			c.deliveries <- d
		}
	}()
	return c
}

// await returns the first delivery naming name.
func (c *rawClient) await(tb testing.TB, name string) delivery {
	tb.Helper()
	timeout := time.After(liveness)
	for {
		select {
		case d, ok := <-c.deliveries:
			if !ok {
				tb.Fatal("raw xDS stream ended")
			}
			if slices.Contains(d.names, name) {
				return d
			}
		case <-timeout:
			tb.Fatalf("no delivery of %s", name)
		}
	}
}

func (c *rawClient) close() {
	_ = c.conn.Close()
	<-c.done
}

// BenchmarkScale runs istiod-lite in-process on fake API clients holding
// 10,000 pods and 1,000 Services (plus 100 namespaces, 200 policies): the
// objects go through the informers, the model and the xDS server. It
// reports the memory after sync, the time a new ztunnel takes to receive
// and decode the full state, and, with 50 connected clients, the time from
// one pod change (API write) to its delivery on every client — debounce
// (100 ms quiet) included.
//
//	go test -run '^$' -bench Scale -benchtime 20x ./istiod-lite/app/
func BenchmarkScale(b *testing.B) {
	kubeObjs, istioObjs := scaleObjects()
	// A follower replica (the Lease is held by another): it builds the
	// model and serves xDS like every replica, but writes no status, which
	// the fake istio clientset's 100-event watch channel could not absorb
	// for 200 policies at once.
	holder, dur, now := "other-replica", int32(3600), metav1.NewMicroTime(time.Now())
	kubeObjs = append(kubeObjs, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: LeaseName},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, AcquireTime: &now, RenewTime: &now},
	})
	base := sampleMem(b)
	kc, ic := kubefake.NewClientset(kubeObjs...), istiofake.NewSimpleClientset(istioObjs...)
	kubeObjs, istioObjs = nil, nil
	apiMem := sampleMem(b) // the fake API server's objects

	cfg := config.Config{
		LogLevel: "info", TrustDomain: "cluster.local", CASource: config.CASourceSelfSigned,
		ZtunnelNamespace: "istio-system", ZtunnelServiceAccount: "ztunnel",
		Namespace: "istio-system", WaypointImage: "ambient/waypoint:test", PodName: "istiod-lite-bench", LeaderElect: true,
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	a, err := New(ctx, cfg, zap.NewNop(), Deps{
		Clients:           &pkgkube.Clients{Kube: kc, Istio: ic, Gateway: gwfake.NewSimpleClientset()},
		PlaintextListener: pl,
	})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	for a.Ready() != nil {
		if time.Since(start) > 5*liveness {
			b.Fatalf("not ready: %v", a.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	syncAndBuild := time.Since(start)
	st := a.pipe.Current()
	if len(st.Model.Workloads) != scaleNamespaces*scalePodsPerNS || len(st.Model.Services) != scaleNamespaces*scaleSvcsPerNS {
		b.Fatalf("model has %d workloads, %d services", len(st.Model.Workloads), len(st.Model.Services))
	}
	synced := sampleMem(b)
	addr := pl.Addr().String()

	// A new ztunnel: time to the full Address state, decoded.
	fullState := func() time.Duration {
		got := make(chan time.Time, 1)
		h := pkgxds.HandlerFunc(func(typeURL string, up map[string]proto.Message, _ []string, _ string) error {
			if typeURL == pkgxds.AddressType && len(up) == scaleNamespaces*(scalePodsPerNS+scaleSvcsPerNS) {
				select {
				case got <- time.Now():
				default:
				}
			}
			return nil
		})
		c, err := pkgxds.New(zap.NewNop(), pkgxds.Config{Address: addr, NodeID: "ztunnel~10.0.1.1~ztunnel-new.istio-system~istio-system.svc.cluster.local",
			Types: pkgxds.ZtunnelTypes}, map[string]pkgxds.Handler{pkgxds.AddressType: h, pkgxds.AuthorizationType: h})
		if err != nil {
			b.Fatal(err)
		}
		cctx, ccancel := context.WithCancel(context.Background())
		cdone := make(chan struct{})
		t0 := time.Now()
		go func() { defer close(cdone); _ = c.Run(cctx) }()
		var took time.Duration
		select {
		case at := <-got:
			took = at.Sub(t0)
		case <-time.After(liveness):
			b.Fatal("no full state")
		}
		ccancel()
		<-cdone
		return took
	}
	full1 := fullState()

	clients := make([]*rawClient, scaleClients)
	for i := range clients {
		clients[i] = dialRaw(b, addr, i)
		clients[i].await(b, "Kubernetes//Pod/ns-0/app-0-7d9f8-00000") // full state
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	connected := sampleMem(b)
	full50 := fullState() // a new client while 50 others are connected

	var lat []time.Duration
	i := 0
	for b.Loop() {
		n, p := i%scaleNamespaces, (i*7)%scalePodsPerNS
		ns, name := fmt.Sprintf("ns-%d", n), fmt.Sprintf("app-%d-7d9f8-%05d", p%scaleSvcsPerNS, p)
		patch := fmt.Sprintf(`{"metadata":{"labels":{"version":"v%d"}}}`, i+2)
		t0 := time.Now()
		if _, err := kc.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		uid := "Kubernetes//Pod/" + ns + "/" + name
		for _, c := range clients {
			lat = append(lat, c.await(b, uid).at.Sub(t0))
		}
		i++
	}
	b.StopTimer()

	// For comparison, a Service change takes the full path (every type
	// rebuilt and diffed).
	var svcLat []time.Duration
	for j := range 5 {
		ns := fmt.Sprintf("ns-%d", j)
		patch := fmt.Sprintf(`{"spec":{"ports":[{"name":"http","port":80,"targetPort":"http","protocol":"TCP"},{"name":"grpc","port":%d,"targetPort":9000,"protocol":"TCP"}]}}`, 9001+j)
		t0 := time.Now()
		if _, err := kc.CoreV1().Services(ns).Patch(context.Background(), "svc-0", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		name := ns + "/svc-0." + ns + ".svc.cluster.local"
		var last time.Duration
		for _, c := range clients {
			last = max(last, c.await(b, name).at.Sub(t0))
		}
		svcLat = append(svcLat, last)
	}
	slices.Sort(svcLat)
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }

	b.ReportMetric(mib(synced.heapInuse), "heap-MiB")
	b.ReportMetric(mib(synced.heapInuse-apiMem.heapInuse), "heap-over-api-MiB")
	b.ReportMetric(mib(synced.rss), "rss-MiB")
	b.ReportMetric(float64(full1.Microseconds())/1000, "fullstate-ms")
	b.ReportMetric(pct(0.5), "change-p50-ms")
	b.ReportMetric(pct(0.99), "change-p99-ms")
	b.ReportMetric(pct(1), "change-max-ms")
	b.ReportMetric(float64(svcLat[len(svcLat)-1].Microseconds())/1000, "svc-change-max-ms")
	b.Logf("memory (after GC + FreeOSMemory): test binary %.0f MiB heap / %.0f MiB RSS; + fake API objects %.0f / %.0f; "+
		"+ istiod-lite synced %.0f MiB heap (%.0f over the fake API), Sys %.0f MiB, RSS %.0f MiB; + 50 clients %.0f MiB heap, RSS %.0f MiB",
		mib(base.heapInuse), mib(base.rss), mib(apiMem.heapInuse), mib(apiMem.rss),
		mib(synced.heapInuse), mib(synced.heapInuse-apiMem.heapInuse), mib(synced.sys), mib(synced.rss),
		mib(connected.heapInuse), mib(connected.rss))
	b.Logf("start → informers synced + first model pushed: %v; full state to a new client: %v (alone), %v (with 50 connected); "+
		"pod change → delivery to %d clients over %d changes: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		syncAndBuild.Round(time.Millisecond), full1.Round(time.Millisecond), full50.Round(time.Millisecond),
		scaleClients, i, pct(0.5), pct(0.99), pct(1))
	b.Logf("Service change (full rebuild) → delivery to all %d clients, 5 changes: %v", scaleClients, svcLat)
}
