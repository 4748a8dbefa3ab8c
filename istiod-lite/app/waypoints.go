package app

import (
	"fmt"
	"sort"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
)

// WaypointTypes are the type URLs of the waypoint resources, in push order.
var WaypointTypes = []string{waypointxds.TypeCluster, waypointxds.TypeEndpoint, waypointxds.TypeListener, waypointxds.TypeRoute}

// WaypointPrefix is the prefix of the Listener and RouteConfiguration names of
// one waypoint: "<namespace>/<gateway name>/". See README.md, "Waypoint
// resource names".
func WaypointPrefix(namespace, name string) string { return namespace + "/" + name + "/" }

// WaypointL7 is the L7 configuration of all waypoints: the served resources by
// type URL and name, and the status conditions to write back.
type WaypointL7 struct {
	Resources  map[string]map[string]proto.Message
	Conditions []waypointxds.Condition
	// Waypoints lists the waypoints built, sorted by namespace/name.
	Waypoints []waypointxds.Key
}

// WaypointInputs builds the waypointxds input of every waypoint Gateway from
// the model's input and snapshot (which says which Services use which
// waypoint), the routes and the full AuthorizationPolicies. It is pure; the
// inputs share the read-only Services map.
func WaypointInputs(in model.Input, snap *model.Snapshot, cfg model.Config,
	httpRoutes []*gatewayv1.HTTPRoute, grpcRoutes []*gatewayv1.GRPCRoute,
	policies []*securityv1.AuthorizationPolicy,
) []waypointxds.Input {
	cfg = cfg.WithDefaults()
	type hostKey struct{ ns, host string }
	byHost := map[hostKey]waypointxds.Key{}
	var waypoints []waypointxds.Key
	for i := range in.Gateways {
		g := &in.Gateways[i]
		if !model.IsWaypoint(g) {
			continue
		}
		host := g.StatusHostname
		if host == "" {
			host = model.Hostname(g.Name, g.Namespace, cfg.DomainSuffix)
		}
		k := waypointxds.Key{Namespace: g.Namespace, Name: g.Name}
		byHost[hostKey{g.Namespace, host}] = k
		waypoints = append(waypoints, k)
	}
	if len(waypoints) == 0 {
		return nil
	}
	sort.Slice(waypoints, func(i, j int) bool { return waypoints[i].String() < waypoints[j].String() })

	services := waypointServices(in, cfg)
	bound := map[waypointxds.Key][]waypointxds.Service{}
	for _, s := range snap.Services {
		h := s.GetWaypoint().GetHostname()
		if h == nil {
			continue
		}
		wp, ok := byHost[hostKey{h.GetNamespace(), h.GetHostname()}]
		if !ok {
			continue
		}
		if ws, ok := services[waypointxds.Key{Namespace: s.GetNamespace(), Name: s.GetName()}]; ok {
			bound[wp] = append(bound[wp], ws)
		}
	}
	var aps []waypointxds.AuthorizationPolicy
	for _, p := range policies {
		if len(p.Spec.GetTargetRefs()) == 0 && p.Spec.GetTargetRef() == nil {
			continue // selector policies are ztunnel's
		}
		aps = append(aps, waypointxds.AuthorizationPolicy{Name: p.Name, Namespace: p.Namespace, Generation: p.Generation, Spec: &p.Spec})
	}
	sort.Slice(aps, func(i, j int) bool {
		if aps[i].Namespace != aps[j].Namespace {
			return aps[i].Namespace < aps[j].Namespace
		}
		return aps[i].Name < aps[j].Name
	})
	out := make([]waypointxds.Input, 0, len(waypoints))
	for _, wp := range waypoints {
		b := bound[wp]
		sort.Slice(b, func(i, j int) bool { return b[i].Key().String() < b[j].Key().String() })
		out = append(out, waypointxds.Input{
			Waypoint:              waypointxds.Waypoint{Name: wp.Name, Namespace: wp.Namespace, TrustDomain: cfg.TrustDomain},
			Bound:                 b,
			Services:              services,
			HTTPRoutes:            httpRoutes,
			GRPCRoutes:            grpcRoutes,
			AuthorizationPolicies: aps,
		})
	}
	return out
}

// waypointServices converts every Service (ExternalName ones have no
// endpoints and are left out) with its endpoints: the pods in its namespace
// its selector matches that have an IP and have not terminated.
func waypointServices(in model.Input, cfg model.Config) map[waypointxds.Key]waypointxds.Service {
	podsByNS := map[string][]*model.Pod{}
	for i := range in.Pods {
		p := &in.Pods[i]
		if len(p.IPs) == 0 || p.Phase == "Succeeded" || p.Phase == "Failed" {
			continue
		}
		podsByNS[p.Namespace] = append(podsByNS[p.Namespace], p)
	}
	out := make(map[waypointxds.Key]waypointxds.Service, len(in.Services))
	for i := range in.Services {
		s := &in.Services[i]
		if s.ExternalName {
			continue
		}
		ws := waypointxds.Service{
			Name: s.Name, Namespace: s.Namespace,
			Hostname: model.Hostname(s.Name, s.Namespace, cfg.DomainSuffix),
		}
		for _, ip := range s.ClusterIPs {
			ws.VIPs = append(ws.VIPs, ip.String())
		}
		named := map[string]string{} // service port name → target port name
		for _, sp := range s.Ports {
			if sp.Protocol != "" && sp.Protocol != "TCP" {
				continue
			}
			p := waypointxds.ServicePort{Name: sp.Name, Port: sp.Port, AppProtocol: sp.AppProtocol}
			switch {
			case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
				named[sp.Name] = sp.TargetPort.StrVal
			case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal > 0:
				p.TargetPort = uint32(sp.TargetPort.IntVal)
			default:
				p.TargetPort = sp.Port
			}
			ws.Ports = append(ws.Ports, p)
		}
		if len(s.Selector) > 0 {
			for _, p := range podsByNS[s.Namespace] {
				if !selects(s.Selector, p.Labels) {
					continue
				}
				e := waypointxds.Endpoint{
					IP: p.IPs[0].String(), Node: p.NodeName, Ready: p.Ready,
					Identity: fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", cfg.TrustDomain, p.Namespace, serviceAccount(p)),
				}
				for portName, target := range named {
					if n, ok := p.ContainerPorts[target]; ok {
						if e.Ports == nil {
							e.Ports = map[string]uint32{}
						}
						e.Ports[portName] = n
					}
				}
				ws.Endpoints = append(ws.Endpoints, e)
			}
			sort.Slice(ws.Endpoints, func(i, j int) bool { return ws.Endpoints[i].IP < ws.Endpoints[j].IP })
		}
		out[ws.Key()] = ws
	}
	return out
}

func serviceAccount(p *model.Pod) string {
	if p.ServiceAccount == "" {
		return "default"
	}
	return p.ServiceAccount
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// BuildWaypoints translates every waypoint and merges the results into one
// set per type URL: Listeners and RouteConfigurations are renamed with the
// waypoint's prefix (and the Listener's RDS references with them); Clusters
// and ClusterLoadAssignments keep Istio's names and are shared (the same
// Service yields the same cluster for every waypoint; on a difference the
// first waypoint in namespace/name order wins).
func BuildWaypoints(inputs []waypointxds.Input) (WaypointL7, error) {
	out := WaypointL7{Resources: map[string]map[string]proto.Message{}}
	for _, t := range WaypointTypes {
		out.Resources[t] = map[string]proto.Message{}
	}
	for _, in := range inputs {
		o, conds := waypointxds.Build(in)
		out.Conditions = append(out.Conditions, conds...)
		key := waypointxds.Key{Namespace: in.Waypoint.Namespace, Name: in.Waypoint.Name}
		out.Waypoints = append(out.Waypoints, key)
		prefix := WaypointPrefix(key.Namespace, key.Name)
		for _, l := range o.Listeners {
			if err := prefixListener(l, prefix); err != nil {
				return WaypointL7{}, fmt.Errorf("waypoint %s: %w", key, err)
			}
			out.Resources[waypointxds.TypeListener][l.GetName()] = l
		}
		for _, r := range o.Routes {
			r.Name = prefix + r.GetName()
			out.Resources[waypointxds.TypeRoute][r.GetName()] = r
		}
		for _, c := range o.Clusters {
			if _, dup := out.Resources[waypointxds.TypeCluster][c.GetName()]; !dup {
				out.Resources[waypointxds.TypeCluster][c.GetName()] = c
			}
		}
		for _, e := range o.Endpoints {
			if _, dup := out.Resources[waypointxds.TypeEndpoint][e.GetClusterName()]; !dup {
				out.Resources[waypointxds.TypeEndpoint][e.GetClusterName()] = e
			}
		}
	}
	return out, nil
}

// prefixListener renames a waypoint Listener and the RDS route_config_name of
// every HttpConnectionManager in its filter chains.
func prefixListener(l *listenerv3.Listener, prefix string) error {
	l.Name = prefix + l.GetName()
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || !tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(hcm); err != nil {
				return fmt.Errorf("decode HttpConnectionManager of listener %s: %w", l.GetName(), err)
			}
			rds := hcm.GetRds()
			if rds == nil {
				continue
			}
			rds.RouteConfigName = prefix + rds.GetRouteConfigName()
			a := &anypb.Any{}
			if err := anypb.MarshalFrom(a, hcm, proto.MarshalOptions{Deterministic: true}); err != nil {
				return fmt.Errorf("encode HttpConnectionManager of listener %s: %w", l.GetName(), err)
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return nil
}
