package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"istio.io/istio/pkg/workloadapi/security"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

func TestNewRejections(t *testing.T) {
	ref := func(n string) model.ObjectRef {
		return model.ObjectRef{Kind: "AuthorizationPolicy", Namespace: "ns", Name: n}
	}
	bad := model.Condition{Object: ref("a"), Type: model.ConditionZtunnelAccepted, Reason: model.ReasonInvalidValue, Message: "rules[0].from[0].source.ipBlocks[0]"}
	badOther := bad
	badOther.Message = "rules[1].to[0].operation.ports[0]"
	good := model.Condition{Object: ref("b"), Type: model.ConditionZtunnelAccepted, Status: true, Reason: model.ReasonAccepted}
	for _, tc := range []struct {
		name       string
		prev, next []model.Condition
		want       int
	}{
		{"first build reports every rejection", nil, []model.Condition{bad, good}, 1},
		{"an unchanged rejection is not reported again", []model.Condition{bad, good}, []model.Condition{bad, good}, 0},
		{"a changed message is reported", []model.Condition{bad}, []model.Condition{badOther}, 1},
		{"accepted conditions are never reported", nil, []model.Condition{good}, 0},
		{"a fixed policy reports nothing", []model.Condition{bad}, []model.Condition{good}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newRejections(tc.prev, tc.next); len(got) != tc.want {
				t.Errorf("newRejections = %v, want %d conditions", got, tc.want)
			}
		})
	}
}

func TestNewWaypointRejections(t *testing.T) {
	parent := &gatewayv1.ParentReference{Name: "echo"}
	bad := waypointxds.Condition{Kind: waypointxds.KindHTTPRoute, Namespace: "ns", Name: "r", ParentRef: parent,
		Condition: metav1.Condition{Type: "Accepted", Status: metav1.ConditionFalse, Reason: "UnsupportedValue", Message: `rules[0].matches[0].path: invalid regex "("`}}
	badOther := bad
	badOther.Message = "rules[1].backendRefs[0]: not found"
	// The same condition in a new build carries a new pointer.
	badAgain := bad
	badAgain.ParentRef = &gatewayv1.ParentReference{Name: "echo"}
	good := bad
	good.Status, good.Reason, good.Message = metav1.ConditionTrue, "Accepted", ""
	for _, tc := range []struct {
		name       string
		prev, next []waypointxds.Condition
		want       int
	}{
		{"first build reports every rejection", nil, []waypointxds.Condition{bad, good}, 1},
		{"an unchanged rejection is not reported again", []waypointxds.Condition{bad}, []waypointxds.Condition{badAgain}, 0},
		{"a changed message is reported", []waypointxds.Condition{bad}, []waypointxds.Condition{badOther}, 1},
		{"accepted conditions are never reported", nil, []waypointxds.Condition{good}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newWaypointRejections(tc.prev, tc.next); len(got) != tc.want {
				t.Errorf("newWaypointRejections = %v, want %d conditions", got, tc.want)
			}
		})
	}
}

// TestMalformedPolicyIsLoggedAndConfigKeepsFlowing: a policy with a bad CIDR
// is logged once with the field named, is sent fail-closed (no groups), and
// a valid policy created afterwards still reaches the client. The metrics
// the issue lists are exposed on the monitoring port.
func TestMalformedPolicyIsLoggedAndConfigKeepsFlowing(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	bad := &securityv1.AuthorizationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "bad-cidr", Generation: 1},
		Spec: securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "x"}},
			Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
				IpBlocks: []string{"10.0.0.300/8"},
			}}}}},
		},
	}
	ta := startAppLogged(t, zap.New(core), false, []runtime.Object{ambientNamespace("demo")}, nil, []runtime.Object{bad})
	rec := runClient(t, ta.plaintext, "ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local", pkgxds.ZtunnelTypes)
	rec.waitFor(t, "policy demo/bad-cidr", func(r map[string]map[string]proto.Message) bool {
		return r[pkgxds.AuthorizationType]["demo/bad-cidr"] != nil
	})
	rec.mu.Lock()
	got := rec.res[pkgxds.AuthorizationType]["demo/bad-cidr"].(*security.Authorization)
	rec.mu.Unlock()
	if len(got.GetGroups()) != 0 || got.GetAction() != security.Action_ALLOW {
		t.Errorf("bad-cidr = %v, want an ALLOW without groups (allows nothing)", got)
	}

	good := bad.DeepCopy()
	good.Name = "good"
	good.Spec.Rules[0].From[0].Source.IpBlocks = []string{"10.0.0.0/8"}
	if _, err := ta.istio.SecurityV1().AuthorizationPolicies("demo").Create(t.Context(), good, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "policy demo/good after the bad one", func(r map[string]map[string]proto.Message) bool {
		a, _ := r[pkgxds.AuthorizationType]["demo/good"].(*security.Authorization)
		return len(a.GetGroups()) == 1
	})

	warned := logs.FilterMessage("policy not accepted by ztunnel as written").FilterField(zap.String("name", "bad-cidr")).All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings about bad-cidr, want exactly 1 (logged once, not per rebuild): %v", len(warned), logs.All())
	}
	if msg := warned[0].ContextMap()["message"].(string); !strings.Contains(msg, "rules[0].from[0].source.ipBlocks[0]") || !strings.Contains(msg, "10.0.0.300/8") {
		t.Errorf("warning message %q does not name the field and value", msg)
	}

	// The model gauges are set once the build is handed to the xDS server,
	// which may be just after the client saw the push: poll.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, metrics := get(t, "http://"+ta.monitoring+"/metrics")
		missing = missing[:0]
		for _, name := range []string{
			"pilot_xds_pushes", "pilot_xds_push_time_bucket", "pilot_xds ", // pilot_total_xds_rejects appears with the first NACK (xds tests)
			"ambient_informer_event_to_push_seconds_bucket", "ambient_informer_events_total", "ambient_model_build_seconds_bucket",
			`ambient_model_objects{kind="policy"} 2`,
		} {
			if !strings.Contains(metrics, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("/metrics lacks %q", missing)
	}
}

// TestPodOnlyBatchesPushTheSameAsAFullBuild: pod additions, updates (label,
// readiness, IP loss) and deletions take the pods-only path, and the served
// Address set stays exactly the full build's; a Service change then takes
// the full path and lands as well. With a waypoint, its resources (whose
// endpoints list pods) are rebuilt on the pods path too.
func TestPodOnlyBatchesPushTheSameAsAFullBuild(t *testing.T) {
	t.Run("no waypoint", func(t *testing.T) { testPodOnlyBatches(t, false) })
	t.Run("waypoint", func(t *testing.T) { testPodOnlyBatches(t, true) })
}

func testPodOnlyBatches(t *testing.T, withWaypoint bool) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}},
	}
	var gwObjs []runtime.Object
	if withWaypoint {
		svc.Labels = map[string]string{"istio.io/use-waypoint": "wp"}
		_, gws := waypointObjects()
		gwObjs = gws[:1] // the Gateway
	}
	ta := startApp(t, []runtime.Object{ambientNamespace("demo"), ambientNamespace("other"), svc,
		readyPod("demo", "web-1", "10.244.1.11", map[string]string{"app": "web"}),
		readyPod("demo", "web-2", "10.244.1.12", map[string]string{"app": "web"}),
	}, gwObjs)
	ctx := t.Context()
	pods := ta.kube.CoreV1()
	served := func() (bool, string) {
		cur := ta.app.pipe.Current()
		if cur == nil {
			return false, "no build yet"
		}
		want := cur.Model.Resources()[model.TypeAddress]
		got := ta.app.xds.Resources(model.TypeAddress)
		if len(got) != len(want) {
			return false, fmt.Sprintf("served %d addresses, the model has %d", len(got), len(want))
		}
		for k, w := range want {
			if !proto.Equal(got[k], w) {
				return false, fmt.Sprintf("%s: served %v, model %v", k, got[k], w)
			}
		}
		if withWaypoint && len(cur.Waypoint.Waypoints) != 1 {
			return false, fmt.Sprintf("%d waypoints", len(cur.Waypoint.Waypoints))
		}
		for _, ty := range WaypointTypes {
			got := ta.app.xds.Resources(ty)
			if len(got) != len(cur.Waypoint.Resources[ty]) {
				return false, fmt.Sprintf("served %d %s, built %d", len(got), ty, len(cur.Waypoint.Resources[ty]))
			}
			for k, w := range cur.Waypoint.Resources[ty] {
				if !proto.Equal(got[k], w) {
					return false, fmt.Sprintf("%s %s differs", ty, k)
				}
			}
		}
		return true, ""
	}
	rebuilds := func(mode string) float64 {
		return testutil.ToFloat64(ta.app.pipe.metrics.rebuilds.WithLabelValues(mode))
	}
	eventually(t, "initial state served", served)
	if withWaypoint {
		// The waypoint controller creates the Gateway's ServiceAccount,
		// Deployment and Service and writes its status: model inputs whose
		// events would share a batch with the first steps' pod changes and
		// make those rebuilds full. Let it settle first.
		eventually(t, "waypoint Service created", func() (bool, string) {
			_, err := ta.kube.CoreV1().Services("demo").Get(ctx, "wp", metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
		settle(t, func() int64 { return ta.app.pipe.Current().Version })
	}

	steps := []struct {
		name string
		do   func() error
	}{
		{"add a pod", func() error {
			_, err := pods.Pods("other").Create(ctx, readyPod("other", "solo", "10.244.2.5", nil), metav1.CreateOptions{})
			return err
		}},
		{"relabel a pod out of the service", func() error {
			_, err := pods.Pods("demo").Patch(ctx, "web-2", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"other"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"a pod turns unready", func() error {
			p := readyPod("demo", "web-1", "10.244.1.11", map[string]string{"app": "web"})
			p.Status.Conditions[0].Status = corev1.ConditionFalse
			_, err := pods.Pods("demo").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		}},
		{"a pod loses its IP", func() error {
			p := readyPod("other", "solo", "", nil)
			p.Status.PodIP, p.Status.PodIPs = "", nil
			_, err := pods.Pods("other").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		}},
		{"delete a pod", func() error { return pods.Pods("demo").Delete(ctx, "web-2", metav1.DeleteOptions{}) }},
	}
	for _, st := range steps {
		before := ta.app.pipe.Current().Version
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		eventually(t, st.name+": rebuilt", func() (bool, string) {
			return ta.app.pipe.Current().Version > before, "no rebuild"
		})
		eventually(t, st.name+": served state equals the full build", served)
	}
	if n := rebuilds("pods"); n < float64(len(steps)) {
		t.Errorf("%v pods-only rebuilds, want ≥ %d (one per step)", n, len(steps))
	}
	if _, ok := ta.app.xds.Resources(model.TypeAddress)[model.WorkloadUID("Kubernetes", "other", "solo")]; ok {
		t.Error("the pod without an IP is still served")
	}

	full := rebuilds("full")
	svc.Spec.Ports[0].Port = 8080
	if _, err := pods.Services("demo").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service change pushed by a full rebuild", func() (bool, string) {
		if rebuilds("full") == full {
			return false, "no full rebuild"
		}
		return served()
	})
}

// settle waits (bounded) until version stays the same for half a second:
// the pipeline has taken every pending change.
func settle(t *testing.T, version func() int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for v := version(); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := version()
		if now == v {
			return
		}
		v = now
	}
	t.Fatal("the pipeline kept rebuilding for 10 s with no input change")
}
