package app

import (
	"net/netip"
	"reflect"
	"sort"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointxds"
)

var mcfg = model.Config{}.WithDefaults()

func wpGateway(ns, name string) model.Gateway {
	return model.Gateway{Namespace: ns, Name: name, ClassName: "istio-waypoint", HBONEListener: true}
}

func svc(ns, name string, labels map[string]string, target intstr.IntOrString) model.Service {
	return model.Service{
		Namespace: ns, Name: name, Labels: labels, Selector: map[string]string{"app": name},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Ports:      []model.ServicePort{{Name: "http", Port: 9080, TargetPort: target, Protocol: "TCP"}},
	}
}

func pod(ns, name, app, ip, phase string, ready bool) model.Pod {
	return model.Pod{
		Namespace: ns, Name: name, Labels: map[string]string{"app": app}, IPs: []netip.Addr{netip.MustParseAddr(ip)},
		NodeName: "node1", ServiceAccount: "sa-" + app, Ready: ready, Phase: phase,
		ContainerPorts: map[string]uint32{"web": 8080},
	}
}

func policy(ns, name string, targeted bool) *securityv1.AuthorizationPolicy {
	p := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 2}}
	if targeted {
		p.Spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "wp"}}
	} else {
		p.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "x"}}
	}
	p.Spec.Action = securityv1beta1.AuthorizationPolicy_DENY
	return p
}

func TestWaypointInputs(t *testing.T) {
	bound := map[string]string{"istio.io/use-waypoint": "wp"}
	base := model.Input{
		Namespaces: []model.Namespace{{Name: "demo"}},
		Gateways:   []model.Gateway{wpGateway("demo", "wp"), {Namespace: "demo", Name: "ingress", ClassName: "istio"}},
		Services: []model.Service{
			svc("demo", "reviews", bound, intstr.FromString("web")),
			svc("demo", "ratings", nil, intstr.FromInt32(9081)),
		},
		Pods: []model.Pod{
			pod("demo", "reviews-2", "reviews", "10.244.1.8", "Running", false),
			pod("demo", "reviews-1", "reviews", "10.244.1.7", "Running", true),
			pod("demo", "reviews-old", "reviews", "10.244.1.6", "Succeeded", false),
			pod("demo", "other", "other", "10.244.1.9", "Running", true),
			pod("elsewhere", "reviews-x", "reviews", "10.244.2.7", "Running", true),
		},
	}
	tests := []struct {
		name      string
		in        model.Input
		policies  []*securityv1.AuthorizationPolicy
		wantWPs   []string
		wantBound map[string][]string // waypoint → bound service keys
		wantAPs   []string
	}{
		{name: "no gateways", in: model.Input{Services: base.Services, Pods: base.Pods}},
		{name: "only a non-waypoint gateway", in: model.Input{Gateways: base.Gateways[1:], Services: base.Services}},
		{
			name: "bound service, targeted policy only", in: base,
			policies:  []*securityv1.AuthorizationPolicy{policy("demo", "l4", false), policy("demo", "l7", true)},
			wantWPs:   []string{"demo/wp"},
			wantBound: map[string][]string{"demo/wp": {"demo/reviews"}},
			wantAPs:   []string{"demo/l7"},
		},
		{
			name: "two waypoints, namespace binding",
			in: func() model.Input {
				in := base
				in.Namespaces = []model.Namespace{{Name: "demo", Labels: map[string]string{"istio.io/use-waypoint": "wp2"}}}
				in.Gateways = append([]model.Gateway{wpGateway("demo", "wp2")}, base.Gateways...)
				return in
			}(),
			wantWPs:   []string{"demo/wp", "demo/wp2"},
			wantBound: map[string][]string{"demo/wp": {"demo/reviews"}, "demo/wp2": {"demo/ratings"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := model.Build(tt.in, mcfg)
			got := WaypointInputs(tt.in, snap, mcfg, nil, nil, tt.policies)
			var wps []string
			gotBound := map[string][]string{}
			for _, in := range got {
				k := waypointxds.Key{Namespace: in.Waypoint.Namespace, Name: in.Waypoint.Name}.String()
				wps = append(wps, k)
				for _, s := range in.Bound {
					gotBound[k] = append(gotBound[k], s.Key().String())
				}
				var aps []string
				for _, p := range in.AuthorizationPolicies {
					aps = append(aps, p.Namespace+"/"+p.Name)
				}
				if !reflect.DeepEqual(aps, tt.wantAPs) {
					t.Errorf("%s policies = %v, want %v", k, aps, tt.wantAPs)
				}
				if in.Waypoint.TrustDomain != "cluster.local" {
					t.Errorf("trust domain = %q", in.Waypoint.TrustDomain)
				}
			}
			if !reflect.DeepEqual(wps, tt.wantWPs) {
				t.Errorf("waypoints = %v, want %v", wps, tt.wantWPs)
			}
			if len(tt.wantBound) > 0 && !reflect.DeepEqual(gotBound, tt.wantBound) {
				t.Errorf("bound = %v, want %v", gotBound, tt.wantBound)
			}
		})
	}
}

func TestWaypointServicesEndpoints(t *testing.T) {
	in := model.Input{
		Services: []model.Service{svc("demo", "reviews", nil, intstr.FromString("web")), svc("demo", "ratings", nil, intstr.FromInt32(9081)),
			{Namespace: "demo", Name: "ext", ExternalName: true}},
		Pods: []model.Pod{
			pod("demo", "reviews-2", "reviews", "10.244.1.8", "Running", false),
			pod("demo", "reviews-1", "reviews", "10.244.1.7", "Running", true),
			pod("demo", "reviews-old", "reviews", "10.244.1.6", "Failed", false),
			pod("elsewhere", "reviews-x", "reviews", "10.244.2.7", "Running", true),
		},
	}
	got := waypointServices(in, mcfg)
	if _, ok := got[waypointxds.Key{Namespace: "demo", Name: "ext"}]; ok {
		t.Error("ExternalName service converted")
	}
	reviews := got[waypointxds.Key{Namespace: "demo", Name: "reviews"}]
	want := waypointxds.Service{
		Namespace: "demo", Name: "reviews", Hostname: "reviews.demo.svc.cluster.local", VIPs: []string{"10.96.0.10"},
		Ports: []waypointxds.ServicePort{{Name: "http", Port: 9080}},
		Endpoints: []waypointxds.Endpoint{
			{IP: "10.244.1.7", Node: "node1", Ready: true, Ports: map[string]uint32{"http": 8080}, Identity: "spiffe://cluster.local/ns/demo/sa/sa-reviews"},
			{IP: "10.244.1.8", Node: "node1", Ready: false, Ports: map[string]uint32{"http": 8080}, Identity: "spiffe://cluster.local/ns/demo/sa/sa-reviews"},
		},
	}
	if !reflect.DeepEqual(reviews, want) {
		t.Errorf("reviews =\n%+v\nwant\n%+v", reviews, want)
	}
	if p := got[waypointxds.Key{Namespace: "demo", Name: "ratings"}].Ports; len(p) != 1 || p[0].TargetPort != 9081 {
		t.Errorf("ratings ports = %+v, want target 9081", p)
	}
}

func TestBuildWaypointsPrefixesListenersAndRoutes(t *testing.T) {
	in := model.Input{
		Namespaces: []model.Namespace{{Name: "demo"}},
		Gateways:   []model.Gateway{wpGateway("demo", "a"), wpGateway("demo", "b")},
		Services: []model.Service{
			svc("demo", "reviews", map[string]string{"istio.io/use-waypoint": "a"}, intstr.FromInt32(8080)),
			svc("demo", "ratings", map[string]string{"istio.io/use-waypoint": "b"}, intstr.FromInt32(8080)),
		},
		Pods: []model.Pod{pod("demo", "reviews-1", "reviews", "10.244.1.7", "Running", true)},
	}
	out, err := BuildWaypoints(WaypointInputs(in, model.Build(in, mcfg), mcfg, nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	names := func(typ string) []string { ks := sortedKeys(out.Resources[typ]); sort.Strings(ks); return ks }
	if got, want := names(waypointxds.TypeListener), []string{"demo/a/waypoint", "demo/b/waypoint"}; !reflect.DeepEqual(got, want) {
		t.Errorf("listeners = %v, want %v", got, want)
	}
	if got, want := names(waypointxds.TypeRoute), []string{"demo/a/9080", "demo/b/9080"}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if got, want := names(waypointxds.TypeCluster), []string{"outbound|9080||ratings.demo.svc.cluster.local", "outbound|9080||reviews.demo.svc.cluster.local"}; !reflect.DeepEqual(got, want) {
		t.Errorf("clusters (shared, unprefixed) = %v, want %v", got, want)
	}
	for _, wp := range []string{"a", "b"} {
		l := out.Resources[waypointxds.TypeListener]["demo/"+wp+"/waypoint"].(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				if got := hcm.GetRds().GetRouteConfigName(); got != "demo/"+wp+"/9080" {
					t.Errorf("waypoint %s RDS name = %q, want demo/%s/9080", wp, got, wp)
				}
			}
		}
	}
	if got := []string{out.Waypoints[0].String(), out.Waypoints[1].String()}; !reflect.DeepEqual(got, []string{"demo/a", "demo/b"}) {
		t.Errorf("Waypoints = %v", got)
	}
}
