package model

import (
	"fmt"

	"istio.io/istio/pkg/workloadapi"
)

// WaypointRef names the Gateway a Namespace, Service or Pod is bound to.
type WaypointRef struct {
	Namespace string
	Name      string
}

// waypointLabel reads istio.io/use-waypoint(-namespace) from labels. set is
// false when the label is absent; a "none" value is set with an empty Name.
func waypointLabel(labels map[string]string, defaultNS string) (ref WaypointRef, set bool) {
	name, ok := labels[LabelUseWaypoint]
	if !ok || name == "" {
		return WaypointRef{}, false
	}
	if name == WaypointNone {
		return WaypointRef{}, true
	}
	ns := labels[LabelUseWaypointNamespace]
	if ns == "" {
		ns = defaultNS
	}
	return WaypointRef{Namespace: ns, Name: name}, true
}

// WaypointBinding resolves which waypoint an object is bound to: its own
// labels win over its namespace's, and "none" at the object level disables
// a namespace binding. ok is false when unbound.
func WaypointBinding(objLabels, nsLabels map[string]string, ns string) (WaypointRef, bool) {
	if ref, set := waypointLabel(objLabels, ns); set {
		return ref, ref.Name != ""
	}
	if ref, set := waypointLabel(nsLabels, ns); set {
		return ref, ref.Name != ""
	}
	return WaypointRef{}, false
}

// IsWaypoint reports whether a Gateway is a waypoint.
func IsWaypoint(g *Gateway) bool {
	return g.ClassName == WaypointGatewayClass || g.HBONEListener
}

// WaypointAccepts reports whether a waypoint with the given
// istio.io/waypoint-for value (default service) takes traffic for a
// "service" or a "workload".
func WaypointAccepts(waypointFor, kind string) bool {
	switch waypointFor {
	case WaypointForAll:
		return true
	case WaypointForNone:
		return false
	case WaypointForWorkload:
		return kind == WaypointForWorkload
	default: // "" or service (unknown values behave as the default)
		return kind == WaypointForService
	}
}

// resolveWaypoint turns a binding into the GatewayAddress to send, or nil and
// a diagnostic reason/message when the binding cannot apply.
func resolveWaypoint(ref WaypointRef, gateways map[WaypointRef]*Gateway, kind, domain string) (*workloadapi.GatewayAddress, string, string) {
	g := gateways[ref]
	if g == nil {
		return nil, ReasonWaypointNotFound, fmt.Sprintf("waypoint Gateway %s/%s does not exist", ref.Namespace, ref.Name)
	}
	if !IsWaypoint(g) {
		return nil, ReasonNotAWaypoint, fmt.Sprintf("Gateway %s/%s is not a waypoint (class %q, no HBONE listener)", ref.Namespace, ref.Name, g.ClassName)
	}
	if wf := g.Labels[LabelWaypointFor]; !WaypointAccepts(wf, kind) {
		if wf == "" {
			wf = WaypointForService
		}
		return nil, ReasonWaypointWrongType, fmt.Sprintf("waypoint %s/%s is for %q traffic, not %s traffic", ref.Namespace, ref.Name, wf, kind)
	}
	host := g.StatusHostname
	if host == "" {
		host = g.Name + "." + g.Namespace + ".svc." + domain
	}
	return &workloadapi.GatewayAddress{
		Destination: &workloadapi.GatewayAddress_Hostname{Hostname: &workloadapi.NamespacedHostname{
			Namespace: g.Namespace,
			Hostname:  host,
		}},
		HboneMtlsPort: HBONEPort,
	}, "", ""
}
