package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/ambient-mesh/ambient/istiod-lite/config"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointctl"
	pkgkube "github.com/ambient-mesh/ambient/pkg/kube"
	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

func TestMain(m *testing.M) {
	// istio.io/client-go's fake clientset lacks watch-list support; list+watch.
	if err := os.Setenv("KUBE_FEATURE_WatchListClient", "false"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// client-go's fake watch broadcaster and klog's flush daemon.
		goleak.IgnoreTopFunction("k8s.io/apimachinery/pkg/watch.(*Broadcaster).loop"),
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*loggingT).flushDaemon"),
		// client-go's idle HTTP/2 connection to a real API server (TestKubeE2E).
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	)
}

// liveness bounds every wait: a hang guard, not a timing assertion.
const liveness = 30 * time.Second

type testApp struct {
	app                   *App
	kube                  *kubefake.Clientset
	istio                 *istiofake.Clientset
	gw                    *gwfake.Clientset
	plaintext, monitoring string
	tlsAddr, ready        string
	stop                  func() // cancels Run and waits for it
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func startApp(t *testing.T, kubeObjs, gwObjs []runtime.Object) *testApp {
	t.Helper()
	return startAppWith(t, false, kubeObjs, gwObjs, nil)
}

func startAppWith(t *testing.T, leaderElect bool, kubeObjs, gwObjs, istioObjs []runtime.Object) *testApp {
	t.Helper()
	return startAppLogged(t, zaptest.NewLogger(t), leaderElect, kubeObjs, gwObjs, istioObjs)
}

func startAppLogged(t *testing.T, log *zap.Logger, leaderElect bool, kubeObjs, gwObjs, istioObjs []runtime.Object) *testApp {
	t.Helper()
	ta := &testApp{
		kube:  kubefake.NewClientset(kubeObjs...),
		istio: istiofake.NewSimpleClientset(istioObjs...),
		gw:    gwfake.NewSimpleClientset(),
	}
	// Through the typed client: the fake tracker files objects given to
	// NewSimpleClientset under v1 or v1beta1, whichever it finds first.
	for _, o := range gwObjs {
		var err error
		switch o := o.(type) {
		case *gatewayv1.Gateway:
			_, err = ta.gw.GatewayV1().Gateways(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *gatewayv1.HTTPRoute:
			_, err = ta.gw.GatewayV1().HTTPRoutes(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		default:
			t.Fatalf("unsupported object %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Config{
		LogLevel: "debug", TrustDomain: "cluster.local", CASource: config.CASourceSelfSigned,
		ZtunnelNamespace: "istio-system", ZtunnelServiceAccount: "ztunnel",
		Namespace: "istio-system", WaypointImage: "ambient/waypoint:test",
		LeaderElect: leaderElect, PodName: "istiod-lite-test",
	}
	pl, tl, ml, rl := listen(t), listen(t), listen(t), listen(t)
	ta.plaintext, ta.tlsAddr, ta.monitoring, ta.ready = pl.Addr().String(), tl.Addr().String(), ml.Addr().String(), rl.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, log, Deps{
		Clients:           &pkgkube.Clients{Kube: ta.kube, Istio: ta.istio, Gateway: ta.gw},
		PlaintextListener: pl, TLSListener: tl, MonitoringListener: ml, ReadyListener: rl,
	})
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	ta.app = a
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	ta.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(ta.stop)
	return ta
}

// recorder is an xDS handler keeping the resources a client holds.
type recorder struct {
	mu      sync.Mutex
	res     map[string]map[string]proto.Message
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{res: map[string]map[string]proto.Message{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) Update(typeURL string, upserts map[string]proto.Message, removes []string, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res[typeURL] == nil {
		r.res[typeURL] = map[string]proto.Message{}
	}
	for k, v := range upserts {
		r.res[typeURL][k] = v
	}
	for _, k := range removes {
		delete(r.res[typeURL], k)
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

// waitFor blocks until cond holds on the client's resources.
func (r *recorder) waitFor(t *testing.T, what string, cond func(map[string]map[string]proto.Message) bool) {
	t.Helper()
	deadline := time.NewTimer(liveness)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.res)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("xDS client never saw: %s", what)
		}
	}
}

func runClient(t *testing.T, addr, nodeID string, types []string) *recorder {
	t.Helper()
	rec := newRecorder()
	handlers := map[string]pkgxds.Handler{}
	for _, ty := range types {
		handlers[ty] = rec
	}
	c, err := pkgxds.New(zaptest.NewLogger(t), pkgxds.Config{Address: addr, NodeID: nodeID, Types: types, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, handlers)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec
}

func ambientNamespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio.io/dataplane-mode": "ambient"}}}
}

func readyPod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: "sa-" + name, NodeName: "node1",
			Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func TestZtunnelSeesEnrolledPodAndItsRemoval(t *testing.T) {
	ta := startApp(t, []runtime.Object{ambientNamespace("demo"), readyPod("demo", "p1", "10.244.1.5", nil)}, nil)
	rec := runClient(t, ta.plaintext, "ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local", pkgxds.ZtunnelTypes)
	const uid = "Kubernetes//Pod/demo/p1"
	rec.waitFor(t, "workload "+uid, func(r map[string]map[string]proto.Message) bool { return r[pkgxds.AddressType][uid] != nil })

	// Readiness and the debug views agree.
	if code, body := get(t, "http://"+ta.ready+"/ready"); code != http.StatusOK {
		t.Errorf("/ready = %d %s, want 200", code, body)
	}
	_, body := get(t, "http://"+ta.monitoring+"/debug/model")
	var mv struct {
		Workloads map[string]json.RawMessage `json:"workloads"`
	}
	if err := json.Unmarshal([]byte(body), &mv); err != nil || mv.Workloads[uid] == nil {
		t.Errorf("/debug/model lacks %s (err %v): %s", uid, err, body)
	}
	_, body = get(t, "http://"+ta.monitoring+"/debug/connections")
	var conns []Connection
	if err := json.Unmarshal([]byte(body), &conns); err != nil || len(conns) != 1 || conns[0].PodName != "ztunnel-abc" || conns[0].PodNamespace != "istio-system" {
		t.Errorf("/debug/connections = %s (err %v), want one connection of istio-system/ztunnel-abc", body, err)
	}

	if err := ta.kube.CoreV1().Pods("demo").Delete(context.Background(), "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "removal of "+uid, func(r map[string]map[string]proto.Message) bool { return r[pkgxds.AddressType][uid] == nil })
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waypointObjects() ([]runtime.Object, []runtime.Object) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "reviews", Labels: map[string]string{"istio.io/use-waypoint": "wp"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, Selector: map[string]string{"app": "reviews"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}},
	}
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "wp"},
		Spec: gatewayv1.GatewaySpec{GatewayClassName: "istio-waypoint",
			Listeners: []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}},
	}
	group, kind := gatewayv1.Group(""), gatewayv1.Kind("Service")
	route := &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "reviews", Generation: 1},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: &group, Kind: &kind, Name: "reviews"}}},
			Rules:           []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "reviews", Port: new(gatewayv1.PortNumber(9080))}}}}}},
		},
	}
	return []runtime.Object{ambientNamespace("demo"), svc, readyPod("demo", "reviews-1", "10.244.1.7", map[string]string{"app": "reviews"})},
		[]runtime.Object{gw, route}
}

func TestWaypointGetsPrefixedResourcesAndRouteStatus(t *testing.T) {
	kubeObjs, gwObjs := waypointObjects()
	ta := startApp(t, kubeObjs, gwObjs)
	rec := runClient(t, ta.plaintext, "waypoint~10.244.1.9~wp-abc.demo~demo.svc.cluster.local", pkgxds.WaypointTypes)
	const listener, route, cluster = "demo/wp/waypoint", "demo/wp/9080", "outbound|9080||reviews.demo.svc.cluster.local"
	rec.waitFor(t, "prefixed listener, route and shared cluster/endpoints", func(r map[string]map[string]proto.Message) bool {
		return r[pkgxds.ListenerType][listener] != nil && r[pkgxds.RouteType][route] != nil &&
			r[pkgxds.ClusterType][cluster] != nil && r[pkgxds.EndpointType][cluster] != nil
	})
	rec.mu.Lock()
	l := rec.res[pkgxds.ListenerType][listener].(*listenerv3.Listener)
	if _, bare := rec.res[pkgxds.ListenerType]["waypoint"]; bare {
		t.Error("unprefixed listener \"waypoint\" served")
	}
	rec.mu.Unlock()
	var rds []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatalf("filter %s: %v", f.GetName(), err)
			}
			rds = append(rds, hcm.GetRds().GetRouteConfigName())
		}
	}
	if len(rds) != 1 || rds[0] != route {
		t.Errorf("listener RDS names = %v, want [%s]", rds, route)
	}

	// The status writer reports the route Accepted under the waypoint controller.
	deadline := time.Now().Add(liveness)
	for {
		hr, err := ta.gw.GatewayV1().HTTPRoutes("demo").Get(context.Background(), "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if accepted(hr.Status.Parents) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPRoute status never Accepted by %s: %+v", waypointctl.ControllerName, hr.Status.Parents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func accepted(ps []gatewayv1.RouteParentStatus) bool {
	for _, p := range ps {
		if p.ControllerName != waypointctl.ControllerName {
			continue
		}
		for _, c := range p.Conditions {
			if c.Type == "Accepted" && c.Status == metav1.ConditionTrue {
				return true
			}
		}
	}
	return false
}

func TestTLSPortServesMeshCertAndRequiresToken(t *testing.T) {
	ta := startApp(t, []runtime.Object{ambientNamespace("demo")}, nil)
	conn, err := tls.Dial("tcp", ta.tlsAddr, &tls.Config{RootCAs: ta.app.ca.Roots(), ServerName: "istiod-lite.istio-system.svc", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("TLS handshake with the mesh root and istiod-lite.istio-system.svc: %v", err)
	}
	_ = conn.Close()

	// Without a token the stream is refused; the client never syncs. The
	// refusal is observed through the client's state.
	rec := newRecorder()
	c, err := pkgxds.New(zaptest.NewLogger(t), pkgxds.Config{
		Address: ta.tlsAddr, TLS: &tls.Config{RootCAs: ta.app.ca.Roots(), ServerName: "istiod-lite.istio-system.svc"},
		NodeID: "ztunnel~x~z.istio-system~x", Types: pkgxds.ZtunnelTypes, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, map[string]pkgxds.Handler{pkgxds.AddressType: rec, pkgxds.AuthorizationType: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(liveness)
	for c.State().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("client without a token saw no error")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.State(); st.Synced() {
		t.Errorf("client without a token synced: %+v", st)
	}
}

// eventually polls cond until it holds; liveness bounds it (a hang guard).
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s; last state: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLeaderWritesPolicyStatusAndReleasesLease(t *testing.T) {
	ap := &securityv1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "deny-l7", Generation: 1},
		Spec: securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "x"}},
			Action:   securityv1beta1.AuthorizationPolicy_ALLOW,
			Rules:    []*securityv1beta1.Rule{{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Paths: []string{"/admin"}}}}}},
		},
	}
	ta := startAppWith(t, true, []runtime.Object{ambientNamespace("demo")}, nil, []runtime.Object{ap})
	ctx := context.Background()
	eventually(t, "ZtunnelAccepted written by the leader", func() (bool, string) {
		got, err := ta.istio.SecurityV1().AuthorizationPolicies("demo").Get(ctx, "deny-l7", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got.Status.Conditions {
			// An ALLOW rule with HTTP fields is dropped for ztunnel: not fully accepted.
			if c.GetType() == "ZtunnelAccepted" && c.GetStatus() == "False" && c.GetObservedGeneration() == 1 {
				return true, ""
			}
		}
		return false, fmt.Sprint(got.Status.Conditions)
	})
	lease, err := ta.kube.CoordinationV1().Leases("istio-system").Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "istiod-lite-test" {
		t.Fatalf("lease = %+v, %v; want held by istiod-lite-test", lease, err)
	}
	ta.stop()
	lease, err = ta.kube.CoordinationV1().Leases("istio-system").Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("lease still held by %q after shutdown, want released", *h)
	}
}

func TestCACertsSourceRequiresTheSecret(t *testing.T) {
	cfg := config.Config{TrustDomain: "cluster.local", CASource: config.CASourceCACerts, Namespace: "istio-system",
		ZtunnelNamespace: "istio-system", ZtunnelServiceAccount: "ztunnel", WaypointImage: "w"}
	clients := &pkgkube.Clients{Kube: kubefake.NewClientset(), Istio: istiofake.NewSimpleClientset(), Gateway: gwfake.NewSimpleClientset()}
	_, err := New(context.Background(), cfg, zaptest.NewLogger(t), Deps{Clients: clients})
	if err == nil || !strings.Contains(err.Error(), "cacerts") {
		t.Fatalf("New with --ca-source=cacerts and no Secret: err = %v, want one naming cacerts", err)
	}
}
