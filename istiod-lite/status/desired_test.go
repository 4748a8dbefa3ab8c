package status

import (
	"testing"
	"time"

	"reflect"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	istiometa "istio.io/api/meta/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
)

const ctrl gatewayv1.GatewayController = "istio.io/mesh-controller"

var (
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

func svcRef(name string) *gatewayv1.ParentReference {
	g, k := gatewayv1.Group(""), gatewayv1.Kind("Service")
	return &gatewayv1.ParentReference{Group: &g, Kind: &k, Name: gatewayv1.ObjectName(name)}
}

func TestFromConditions(t *testing.T) {
	model := []model.Condition{
		{Object: model.ObjectRef{Kind: "AuthorizationPolicy", Namespace: "ns", Name: "l4"}, Type: model.ConditionZtunnelAccepted, Status: true, Reason: "Accepted", Message: "ok"},
		{Object: model.ObjectRef{Kind: "PeerAuthentication", Namespace: "ns", Name: "pa"}, Type: "Other", Status: true},
	}
	wp := []waypointxds.Condition{
		{Kind: "AuthorizationPolicy", Namespace: "ns", Name: "l7", Condition: metav1.Condition{Type: "WaypointAccepted", Status: "True", Reason: "Accepted", Message: "bound to ns/wp1", ObservedGeneration: 3}},
		{Kind: "AuthorizationPolicy", Namespace: "ns", Name: "l7", Condition: metav1.Condition{Type: "WaypointAccepted", Status: "False", Reason: "UnsupportedValue", Message: "ipBlocks"}},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r", ParentRef: svcRef("b"), Condition: metav1.Condition{Type: "ResolvedRefs", Status: "True", ObservedGeneration: 2}},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r", ParentRef: svcRef("b"), Condition: metav1.Condition{Type: "Accepted", Status: "True", ObservedGeneration: 2}},
		{Kind: "HTTPRoute", Namespace: "ns", Name: "r", ParentRef: svcRef("a"), Condition: metav1.Condition{Type: "Accepted", Status: "False", ObservedGeneration: 2}},
		{Kind: "GRPCRoute", Namespace: "ns", Name: "g", ParentRef: svcRef("a"), Condition: metav1.Condition{Type: "Accepted", Status: "True"}},
	}
	got := FromConditions(model, wp, ctrl)
	want := Desired{
		Policies: map[Key][]metav1.Condition{
			{"ns", "l4"}: {{Type: "ZtunnelAccepted", Status: "True", Reason: "Accepted", Message: "ok"}},
			// False wins over True; only the False messages are kept.
			{"ns", "l7"}: {{Type: "WaypointAccepted", Status: "False", Reason: "UnsupportedValue", Message: "ipBlocks"}},
		},
		HTTPRoutes: map[Key][]gatewayv1.RouteParentStatus{
			{"ns", "r"}: {
				{ParentRef: *svcRef("a"), ControllerName: ctrl, Conditions: []metav1.Condition{{Type: "Accepted", Status: "False", ObservedGeneration: 2}}},
				{ParentRef: *svcRef("b"), ControllerName: ctrl, Conditions: []metav1.Condition{
					{Type: "Accepted", Status: "True", ObservedGeneration: 2},
					{Type: "ResolvedRefs", Status: "True", ObservedGeneration: 2},
				}},
			},
		},
		GRPCRoutes: map[Key][]gatewayv1.RouteParentStatus{
			{"ns", "g"}: {{ParentRef: *svcRef("a"), ControllerName: ctrl, Conditions: []metav1.Condition{{Type: "Accepted", Status: "True"}}}},
		},
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("FromConditions =\n%+v\nwant\n%+v", got, want)
	}
}

func ic(typ, status, msg string, gen int64, at time.Time) *istiometa.IstioCondition {
	return &istiometa.IstioCondition{Type: typ, Status: status, Message: msg, ObservedGeneration: gen, LastTransitionTime: timestamppb.New(at)}
}

func TestPolicyConditions(t *testing.T) {
	accepted := []metav1.Condition{{Type: "ZtunnelAccepted", Status: "True", Message: "ok"}}
	tests := []struct {
		name        string
		cur         []*istiometa.IstioCondition
		want        []metav1.Condition
		gen         int64
		out         []*istiometa.IstioCondition
		wantChanged bool
	}{
		{name: "nothing wanted, nothing there"},
		{name: "new condition", want: accepted, gen: 1,
			out: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 1, t1)}, wantChanged: true},
		{name: "unchanged keeps the time", cur: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 1, t0)}, want: accepted, gen: 1,
			out: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 1, t0)}},
		{name: "new generation, same status: keeps the time", cur: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 1, t0)}, want: accepted, gen: 2,
			out: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 2, t0)}, wantChanged: true},
		{name: "status flips: new time", cur: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "False", "bad", 1, t0)}, want: accepted, gen: 1,
			out: []*istiometa.IstioCondition{ic("ZtunnelAccepted", "True", "ok", 1, t1)}, wantChanged: true},
		{name: "stale owned condition removed, foreign one kept",
			cur: []*istiometa.IstioCondition{ic("Reconciled", "True", "", 1, t0), ic("WaypointAccepted", "True", "", 1, t0)},
			out: []*istiometa.IstioCondition{ic("Reconciled", "True", "", 1, t0)}, wantChanged: true},
		{name: "foreign only: unchanged", cur: []*istiometa.IstioCondition{ic("Reconciled", "True", "", 1, t0)},
			out: []*istiometa.IstioCondition{ic("Reconciled", "True", "", 1, t0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed := PolicyConditions(tt.cur, tt.want, tt.gen, t1)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if len(out) != len(tt.out) {
				t.Fatalf("conditions = %v, want %v", out, tt.out)
			}
			for i := range out {
				if !proto.Equal(out[i], tt.out[i]) {
					t.Errorf("condition %d = %v, want %v", i, out[i], tt.out[i])
				}
			}
		})
	}
}

func TestRouteParents(t *testing.T) {
	other := gatewayv1.RouteParentStatus{ParentRef: *svcRef("x"), ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: "True", LastTransitionTime: metav1.NewTime(t0)}}}
	ours := func(parent, status string, at time.Time) gatewayv1.RouteParentStatus {
		return gatewayv1.RouteParentStatus{ParentRef: *svcRef(parent), ControllerName: ctrl,
			Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionStatus(status), ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(at)}}}
	}
	want := func(parent, status string) gatewayv1.RouteParentStatus {
		p := ours(parent, status, time.Time{})
		p.Conditions[0].LastTransitionTime = metav1.Time{}
		return p
	}
	tests := []struct {
		name        string
		cur, want   []gatewayv1.RouteParentStatus
		out         []gatewayv1.RouteParentStatus
		wantChanged bool
	}{
		{name: "empty"},
		{name: "add ours after others", cur: []gatewayv1.RouteParentStatus{other}, want: []gatewayv1.RouteParentStatus{want("a", "True")},
			out: []gatewayv1.RouteParentStatus{other, ours("a", "True", t1)}, wantChanged: true},
		{name: "unchanged", cur: []gatewayv1.RouteParentStatus{other, ours("a", "True", t0)}, want: []gatewayv1.RouteParentStatus{want("a", "True")},
			out: []gatewayv1.RouteParentStatus{other, ours("a", "True", t0)}},
		{name: "flip", cur: []gatewayv1.RouteParentStatus{ours("a", "True", t0)}, want: []gatewayv1.RouteParentStatus{want("a", "False")},
			out: []gatewayv1.RouteParentStatus{ours("a", "False", t1)}, wantChanged: true},
		{name: "stale parent of ours removed", cur: []gatewayv1.RouteParentStatus{ours("old", "True", t0), other}, want: nil,
			out: []gatewayv1.RouteParentStatus{other}, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed := RouteParents(tt.cur, tt.want, ctrl, t1)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if !reflect.DeepEqual(out, tt.out) {
				t.Errorf("parents =\n%+v\nwant\n%+v", out, tt.out)
			}
		})
	}
}
