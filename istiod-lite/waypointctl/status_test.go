package waypointctl

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		gw   *gatewayv1.Gateway
		ok   bool
	}{
		{"hbone listener", waypoint("wp"), true},
		{"hbone among others", waypoint("wp", func(gw *gatewayv1.Gateway) {
			gw.Spec.Listeners = append([]gatewayv1.Listener{{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType}}, gw.Spec.Listeners...)
		}), true},
		{"no listeners", waypoint("wp", func(gw *gatewayv1.Gateway) { gw.Spec.Listeners = nil }), false},
		{"hbone on another port", waypoint("wp", func(gw *gatewayv1.Gateway) { gw.Spec.Listeners[0].Port = 15009 }), false},
		{"http on 15008", waypoint("wp", func(gw *gatewayv1.Gateway) { gw.Spec.Listeners[0].Protocol = gatewayv1.HTTPProtocolType }), false},
		{"negative replicas", waypoint("wp", withAnnotation(AnnotationReplicas, "-1")), false},
		{"zero replicas", waypoint("wp", withAnnotation(AnnotationReplicas, "0")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Validate(tt.gw)
			if v.Accepted != tt.ok {
				t.Errorf("Accepted = %v (%s), want %v", v.Accepted, v.Message, tt.ok)
			}
			if !v.Accepted && v.Message == "" {
				t.Error("rejection without a message")
			}
		})
	}
}

func deployment(replicas, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns1"},
		Spec:       appsv1.DeploymentSpec{Replicas: new(replicas)},
		Status:     appsv1.DeploymentStatus{ReadyReplicas: ready},
	}
}

func service(clusterIP string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "wp", Namespace: "ns1"}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP}}
}

type condWant struct {
	status metav1.ConditionStatus
	reason string
}

func TestComputeStatus(t *testing.T) {
	ok := Validation{Accepted: true}
	bad := Validation{Message: "a waypoint needs a listener"}
	tests := []struct {
		name       string
		gw         *gatewayv1.Gateway
		v          Validation
		obs        Observed
		accepted   condWant
		programmed condWant
		addresses  []string
	}{
		{"ready", waypoint("wp"), ok, Observed{Deployment: deployment(1, 1), Service: service("10.96.0.7")},
			condWant{"True", "Accepted"}, condWant{"True", "Programmed"}, []string{"IPAddress=10.96.0.7", "Hostname=wp.ns1.svc.cluster.local"}},
		{"not ready", waypoint("wp"), ok, Observed{Deployment: deployment(1, 0), Service: service("10.96.0.7")},
			condWant{"True", "Accepted"}, condWant{"False", "Pending"}, []string{"IPAddress=10.96.0.7", "Hostname=wp.ns1.svc.cluster.local"}},
		{"no cluster IP yet", waypoint("wp"), ok, Observed{Deployment: deployment(1, 1), Service: service("")},
			condWant{"True", "Accepted"}, condWant{"False", "Pending"}, []string{"Hostname=wp.ns1.svc.cluster.local"}},
		{"headless service", waypoint("wp"), ok, Observed{Deployment: deployment(1, 1), Service: service("None")},
			condWant{"True", "Accepted"}, condWant{"False", "Pending"}, []string{"Hostname=wp.ns1.svc.cluster.local"}},
		{"children missing", waypoint("wp"), ok, Observed{},
			condWant{"True", "Accepted"}, condWant{"False", "Pending"}, nil},
		{"scaled to zero", waypoint("wp"), ok, Observed{Deployment: deployment(0, 0), Service: service("10.96.0.7")},
			condWant{"True", "Accepted"}, condWant{"False", "NoResources"}, []string{"IPAddress=10.96.0.7", "Hostname=wp.ns1.svc.cluster.local"}},
		{"conflict", waypoint("wp"), ok, Observed{Service: service("10.96.0.7"), Conflict: "Deployment ns1/wp exists"},
			condWant{"True", "Accepted"}, condWant{"False", "NoResources"}, nil},
		{"invalid", waypoint("wp"), bad, Observed{},
			condWant{"False", "InvalidParameters"}, condWant{"False", "Invalid"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ComputeStatus(tt.gw, tt.v, tt.obs, "cluster.local")
			if len(st.Conditions) != 2 {
				t.Fatalf("conditions %+v", st.Conditions)
			}
			checkCond(t, st.Conditions[0], "Accepted", tt.accepted)
			checkCond(t, st.Conditions[1], "Programmed", tt.programmed)
			for _, c := range st.Conditions {
				if c.ObservedGeneration != 3 || c.Message == "" || !c.LastTransitionTime.IsZero() {
					t.Errorf("condition %+v: want observedGeneration 3, a message, no time", c)
				}
			}
			var addrs []string
			for _, a := range st.Addresses {
				addrs = append(addrs, string(*a.Type)+"="+a.Value)
			}
			if !slices.Equal(addrs, tt.addresses) {
				t.Errorf("addresses %v, want %v", addrs, tt.addresses)
			}
			if len(st.Listeners) != 1 || st.Listeners[0].Name != "mesh" {
				t.Fatalf("listeners %+v", st.Listeners)
			}
			lp := findCond(st.Listeners[0].Conditions, "Programmed")
			if lp == nil || lp.Status != tt.programmed.status {
				t.Errorf("listener Programmed %+v, want %s", lp, tt.programmed.status)
			}
		})
	}
}

func TestComputeStatusExtraListener(t *testing.T) {
	gw := waypoint("wp", func(gw *gatewayv1.Gateway) {
		gw.Spec.Listeners = append(gw.Spec.Listeners, gatewayv1.Listener{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType})
	})
	st := ComputeStatus(gw, Validate(gw), Observed{Deployment: deployment(1, 1), Service: service("10.96.0.7")}, "cluster.local")
	if len(st.Listeners) != 2 {
		t.Fatalf("listeners %+v", st.Listeners)
	}
	checkCond(t, *findCond(st.Listeners[0].Conditions, "Accepted"), "Accepted", condWant{"True", "Accepted"})
	checkCond(t, *findCond(st.Listeners[1].Conditions, "Accepted"), "Accepted", condWant{"False", "UnsupportedProtocol"})
	checkCond(t, st.Conditions[1], "Programmed", condWant{"True", "Programmed"})
}

func checkCond(t *testing.T, c metav1.Condition, typ string, want condWant) {
	t.Helper()
	if c.Type != typ || c.Status != want.status || c.Reason != want.reason {
		t.Errorf("%s = %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, want.status, want.reason)
	}
}

func findCond(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

func TestMergeStatusKeepsTransitionTime(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	gw := waypoint("wp")
	pending := ComputeStatus(gw, Validation{Accepted: true}, Observed{Deployment: deployment(1, 0), Service: service("10.96.0.7")}, "cluster.local")
	ready := ComputeStatus(gw, Validation{Accepted: true}, Observed{Deployment: deployment(1, 1), Service: service("10.96.0.7")}, "cluster.local")

	first := MergeStatus(gatewayv1.GatewayStatus{}, pending, t0)
	for _, c := range first.Conditions {
		if !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("new %s condition time %v, want %v", c.Type, c.LastTransitionTime, t0)
		}
	}

	same := MergeStatus(first, pending, t1)
	if !StatusEqual(first, same) {
		t.Error("StatusEqual: an unchanged status compares different")
	}
	for _, c := range same.Conditions {
		if !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("unchanged %s condition time moved to %v", c.Type, c.LastTransitionTime)
		}
	}

	next := MergeStatus(first, ready, t1)
	if StatusEqual(first, next) {
		t.Error("StatusEqual: Pending → Programmed compares equal")
	}
	if a := findCond(next.Conditions, "Accepted"); !a.LastTransitionTime.Equal(&t0) {
		t.Errorf("Accepted did not change but its time moved to %v", a.LastTransitionTime)
	}
	if p := findCond(next.Conditions, "Programmed"); !p.LastTransitionTime.Equal(&t1) {
		t.Errorf("Programmed changed but its time is %v, want %v", p.LastTransitionTime, t1)
	}
	if lp := findCond(next.Listeners[0].Conditions, "Programmed"); !lp.LastTransitionTime.Equal(&t1) {
		t.Errorf("listener Programmed changed but its time is %v", lp.LastTransitionTime)
	}
	if la := findCond(next.Listeners[0].Conditions, "Accepted"); !la.LastTransitionTime.Equal(&t0) {
		t.Errorf("listener Accepted unchanged but its time is %v", la.LastTransitionTime)
	}
}

func TestStatusEqualSeesMessageAndGeneration(t *testing.T) {
	gw := waypoint("wp")
	a := ComputeStatus(gw, Validation{Accepted: true}, Observed{}, "cluster.local")
	b := *a.DeepCopy()
	b.Conditions[1].Message = "other"
	if StatusEqual(a, b) {
		t.Error("message change not seen")
	}
	c := *a.DeepCopy()
	c.Conditions[0].ObservedGeneration = 4
	if StatusEqual(a, c) {
		t.Error("observedGeneration change not seen")
	}
}

func TestMergeStatusKeepsAttachedRoutes(t *testing.T) {
	gw := waypoint("wp")
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	prev := MergeStatus(gatewayv1.GatewayStatus{}, ComputeStatus(gw, Validation{Accepted: true}, Observed{}, "cluster.local"), now)
	prev.Listeners[0].AttachedRoutes = 4 // written by the route status writer
	next := MergeStatus(prev, ComputeStatus(gw, Validation{Accepted: true}, Observed{}, "cluster.local"), now)
	if got := next.Listeners[0].AttachedRoutes; got != 4 {
		t.Errorf("attachedRoutes %d, want 4 kept", got)
	}
	if !StatusEqual(prev, next) {
		t.Error("unchanged status with routes attached compares different")
	}
}
