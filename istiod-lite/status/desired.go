package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	istiometa "istio.io/api/meta/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
)

// OwnedPolicyConditions are the AuthorizationPolicy condition types this
// writer manages; other types are left as they are.
var OwnedPolicyConditions = []string{model.ConditionZtunnelAccepted, waypointxds.ConditionWaypointAccepted}

// Key names a namespaced object.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Desired is the status the writer makes true. Objects absent from a map get
// none of the writer's conditions (stale ones are removed).
type Desired struct {
	// Policies holds the owned conditions of each AuthorizationPolicy,
	// sorted by type, without ObservedGeneration and transition times.
	Policies map[Key][]metav1.Condition
	// HTTPRoutes and GRPCRoutes hold the parents of the waypoint controller,
	// sorted by parentRef, conditions sorted by type, without transition times.
	HTTPRoutes map[Key][]gatewayv1.RouteParentStatus
	GRPCRoutes map[Key][]gatewayv1.RouteParentStatus
}

// FromConditions turns the model's and the waypoints' conditions into the
// desired status. Several conditions of one type on one policy (a policy
// targeting Services of two waypoints) merge into one: False wins, messages
// are joined.
func FromConditions(modelConds []model.Condition, wpConds []waypointxds.Condition, controller gatewayv1.GatewayController) Desired {
	d := Desired{
		Policies:   map[Key][]metav1.Condition{},
		HTTPRoutes: map[Key][]gatewayv1.RouteParentStatus{},
		GRPCRoutes: map[Key][]gatewayv1.RouteParentStatus{},
	}
	policy := map[Key]map[string][]metav1.Condition{}
	addPolicy := func(k Key, c metav1.Condition) {
		if policy[k] == nil {
			policy[k] = map[string][]metav1.Condition{}
		}
		policy[k][c.Type] = append(policy[k][c.Type], c)
	}
	for _, c := range modelConds {
		if c.Object.Kind != waypointxds.KindAuthorizationPolicy {
			continue
		}
		addPolicy(Key{c.Object.Namespace, c.Object.Name}, metav1.Condition{
			Type: c.Type, Status: condStatus(c.Status), Reason: c.Reason, Message: c.Message,
		})
	}
	type routeKey struct {
		kind string
		key  Key
	}
	routes := map[routeKey]map[string]*gatewayv1.RouteParentStatus{}
	for _, c := range wpConds {
		k := Key{c.Namespace, c.Name}
		switch c.Kind {
		case waypointxds.KindAuthorizationPolicy:
			mc := c.Condition
			mc.ObservedGeneration, mc.LastTransitionTime = 0, metav1.Time{}
			addPolicy(k, mc)
		case waypointxds.KindHTTPRoute, waypointxds.KindGRPCRoute:
			if c.ParentRef == nil {
				continue
			}
			rk := routeKey{c.Kind, k}
			if routes[rk] == nil {
				routes[rk] = map[string]*gatewayv1.RouteParentStatus{}
			}
			pk := ParentKey(*c.ParentRef)
			ps := routes[rk][pk]
			if ps == nil {
				ps = &gatewayv1.RouteParentStatus{ParentRef: *c.ParentRef, ControllerName: controller}
				routes[rk][pk] = ps
			}
			mc := c.Condition
			mc.LastTransitionTime = metav1.Time{}
			ps.Conditions = setCondition(ps.Conditions, mc)
		}
	}
	for k, byType := range policy {
		var cs []metav1.Condition
		for _, list := range byType {
			cs = append(cs, mergeSameType(list))
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Type < cs[j].Type })
		d.Policies[k] = cs
	}
	for rk, parents := range routes {
		keys := make([]string, 0, len(parents))
		for pk := range parents {
			keys = append(keys, pk)
		}
		sort.Strings(keys)
		list := make([]gatewayv1.RouteParentStatus, 0, len(keys))
		for _, pk := range keys {
			ps := parents[pk]
			sort.Slice(ps.Conditions, func(i, j int) bool { return ps.Conditions[i].Type < ps.Conditions[j].Type })
			list = append(list, *ps)
		}
		if rk.kind == waypointxds.KindHTTPRoute {
			d.HTTPRoutes[rk.key] = list
		} else {
			d.GRPCRoutes[rk.key] = list
		}
	}
	return d
}

// setCondition replaces the condition of c's type, or appends c. Two waypoints
// reporting on the same parentRef cannot happen (a parentRef names one
// waypoint or one Service bound to one waypoint), so last wins.
func setCondition(cs []metav1.Condition, c metav1.Condition) []metav1.Condition {
	for i := range cs {
		if cs[i].Type == c.Type {
			cs[i] = c
			return cs
		}
	}
	return append(cs, c)
}

func mergeSameType(list []metav1.Condition) metav1.Condition {
	if len(list) == 1 {
		return list[0]
	}
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].Status != list[j].Status {
			return list[i].Status == metav1.ConditionFalse
		}
		return list[i].Message < list[j].Message
	})
	out := list[0]
	var msgs []string
	seen := map[string]bool{}
	for _, c := range list {
		if c.Status == out.Status && c.Message != "" && !seen[c.Message] {
			seen[c.Message] = true
			msgs = append(msgs, c.Message)
		}
	}
	out.Message = strings.Join(msgs, "; ")
	return out
}

func condStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// ParentKey identifies a parentRef (defaults applied: group
// gateway.networking.k8s.io, kind Gateway; the namespace is kept as given).
func ParentKey(p gatewayv1.ParentReference) string {
	group, kind, ns, section, port := "gateway.networking.k8s.io", "Gateway", "", "", ""
	if p.Group != nil {
		group = string(*p.Group)
	}
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	if p.SectionName != nil {
		section = string(*p.SectionName)
	}
	if p.Port != nil {
		port = fmt.Sprint(*p.Port)
	}
	return strings.Join([]string{group, kind, ns, string(p.Name), section, port}, "|")
}

// PolicyConditions returns the conditions cur (an IstioStatus's) with the
// owned ones replaced by want (each stamped with generation), and whether that
// differs from cur ignoring transition and probe times. A condition keeps its
// LastTransitionTime while its status does not change; otherwise it gets now.
func PolicyConditions(cur []*istiometa.IstioCondition, want []metav1.Condition, generation int64, now time.Time) ([]*istiometa.IstioCondition, bool) {
	owned := map[string]bool{}
	for _, t := range OwnedPolicyConditions {
		owned[t] = true
	}
	prev := map[string]*istiometa.IstioCondition{}
	var next []*istiometa.IstioCondition
	for _, c := range cur {
		if owned[c.GetType()] {
			prev[c.GetType()] = c
			continue
		}
		next = append(next, c)
	}
	for _, w := range want {
		c := &istiometa.IstioCondition{
			Type: w.Type, Status: string(w.Status), Reason: w.Reason, Message: w.Message,
			ObservedGeneration: generation,
		}
		if p := prev[w.Type]; p != nil && p.GetStatus() == c.Status && p.GetLastTransitionTime() != nil {
			c.LastTransitionTime = p.GetLastTransitionTime()
		} else {
			c.LastTransitionTime = timestamppb.New(now.Truncate(time.Second))
		}
		next = append(next, c)
	}
	return next, !istioConditionsEqual(cur, next)
}

func istioConditionsEqual(a, b []*istiometa.IstioCondition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.GetType() != y.GetType() || x.GetStatus() != y.GetStatus() || x.GetReason() != y.GetReason() ||
			x.GetMessage() != y.GetMessage() || x.GetObservedGeneration() != y.GetObservedGeneration() {
			return false
		}
	}
	return true
}

// RouteParents returns cur with the entries of controller replaced by want,
// and whether that differs from cur ignoring transition times. Entries of
// other controllers keep their place; ours follow in want's order.
// Conditions keep their LastTransitionTime while their status does not change.
func RouteParents(cur, want []gatewayv1.RouteParentStatus, controller gatewayv1.GatewayController, now time.Time) ([]gatewayv1.RouteParentStatus, bool) {
	prev := map[string]gatewayv1.RouteParentStatus{}
	var next []gatewayv1.RouteParentStatus
	for _, p := range cur {
		if p.ControllerName == controller {
			prev[ParentKey(p.ParentRef)] = p
			continue
		}
		next = append(next, p)
	}
	for _, w := range want {
		p := gatewayv1.RouteParentStatus{ParentRef: w.ParentRef, ControllerName: controller}
		old := prev[ParentKey(w.ParentRef)]
		for _, c := range w.Conditions {
			c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
			for _, o := range old.Conditions {
				if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
			p.Conditions = append(p.Conditions, c)
		}
		next = append(next, p)
	}
	return next, !parentsEqual(cur, next)
}

func parentsEqual(a, b []gatewayv1.RouteParentStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ControllerName != b[i].ControllerName || ParentKey(a[i].ParentRef) != ParentKey(b[i].ParentRef) ||
			len(a[i].Conditions) != len(b[i].Conditions) {
			return false
		}
		for j := range a[i].Conditions {
			x, y := a[i].Conditions[j], b[i].Conditions[j]
			if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
				x.ObservedGeneration != y.ObservedGeneration {
				return false
			}
		}
	}
	return true
}
