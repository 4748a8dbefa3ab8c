package route

import (
	"net/netip"
	"testing"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// The fake mesh: nodes A and B, namespace default unless noted.
//
//	sleep       10.0.1.1  A  client
//	echo-z      10.0.1.2  A  echo 80→8080
//	echo-b      10.0.2.2  B  echo 80→8080
//	named-1     10.0.2.3  B  named (svc port 80, target 0) maps 80→9000
//	named-2     10.0.2.4  B  named, no mapping
//	down-1      10.0.2.5  B  down, UNHEALTHY
//	reviews-1   10.0.2.6  B  reviews (waypoint by hostname)
//	wp-1        10.0.2.9  B  waypoint service, sa waypoint
//	db          10.0.2.50 B  workload waypoint by hostname
//	legacy      10.0.1.20 A  protocol NONE, svc legacy
//	pair-1/2    10.0.2.7/8 B pair
//	cap-0/1     10.0.2.10/11 B capacity 0 / 1
//	dual        10.0.2.12, fd00::12 B  svc dual (v6 VIP)
//	wpdown-svc  waypoint service without pods

type wopt func(*workloadapi.Workload)

func ip(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func workload(uid, node string, addrs []string, opts ...wopt) *workloadapi.Address {
	w := &workloadapi.Workload{Uid: uid, Name: uid, Namespace: "default", ServiceAccount: uid, Node: node,
		TunnelProtocol: workloadapi.TunnelProtocol_HBONE}
	for _, a := range addrs {
		w.Addresses = append(w.Addresses, ip(a))
	}
	for _, o := range opts {
		o(w)
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

func member(host string, ports ...uint32) wopt {
	return func(w *workloadapi.Workload) {
		if w.Services == nil {
			w.Services = map[string]*workloadapi.PortList{}
		}
		pl := &workloadapi.PortList{}
		for i := 0; i+1 < len(ports); i += 2 {
			pl.Ports = append(pl.Ports, &workloadapi.Port{ServicePort: ports[i], TargetPort: ports[i+1]})
		}
		w.Services["default/"+host] = pl
	}
}

func byHost(host string) *workloadapi.GatewayAddress {
	return &workloadapi.GatewayAddress{HboneMtlsPort: 15008, Destination: &workloadapi.GatewayAddress_Hostname{
		Hostname: &workloadapi.NamespacedHostname{Namespace: "default", Hostname: host}}}
}

type sopt func(*workloadapi.Service)

func service(ns, host, vip string, port, target uint32, opts ...sopt) *workloadapi.Address {
	s := &workloadapi.Service{Name: host, Namespace: ns, Hostname: host,
		Addresses: []*workloadapi.NetworkAddress{{Address: ip(vip)}},
		Ports:     []*workloadapi.Port{{ServicePort: port, TargetPort: target}}}
	for _, o := range opts {
		o(s)
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: s}}
}

func fixture(t testing.TB) *state.Snapshot {
	t.Helper()
	up := map[string]*workloadapi.Address{}
	add := func(a *workloadapi.Address) {
		if w := a.GetWorkload(); w != nil {
			up[w.Uid] = a
		} else {
			up[a.GetService().Namespace+"/"+a.GetService().Hostname] = a
		}
	}
	for _, a := range []*workloadapi.Address{
		workload("sleep", "A", []string{"10.0.1.1"}),
		workload("echo-z", "A", []string{"10.0.1.2"}, member("echo", 80, 8080)),
		workload("echo-b", "B", []string{"10.0.2.2"}, member("echo", 80, 8080)),
		workload("named-1", "B", []string{"10.0.2.3"}, member("named", 80, 9000)),
		workload("named-2", "B", []string{"10.0.2.4"}, member("named")),
		workload("down-1", "B", []string{"10.0.2.5"}, member("down"), func(w *workloadapi.Workload) { w.Status = workloadapi.WorkloadStatus_UNHEALTHY }),
		workload("reviews-1", "B", []string{"10.0.2.6"}, member("reviews")),
		workload("wp-1", "B", []string{"10.0.2.9"}, member("waypoint"), func(w *workloadapi.Workload) { w.ServiceAccount = "waypoint" }),
		workload("db", "B", []string{"10.0.2.50"}, func(w *workloadapi.Workload) { w.Waypoint = byHost("waypoint") }),
		workload("legacy", "A", []string{"10.0.1.20"}, member("legacy"), func(w *workloadapi.Workload) { w.TunnelProtocol = workloadapi.TunnelProtocol_NONE }),
		workload("pair-1", "B", []string{"10.0.2.7"}, member("pair")),
		workload("pair-2", "B", []string{"10.0.2.8"}, member("pair")),
		workload("cap-0", "B", []string{"10.0.2.10"}, member("cap"), func(w *workloadapi.Workload) { w.Capacity = wrapU32(0) }),
		workload("cap-1", "B", []string{"10.0.2.11"}, member("cap")),
		workload("dual", "B", []string{"10.0.2.12", "fd00::12"}, member("dual")),
		workload("priv-1", "B", []string{"10.0.2.13"}, func(w *workloadapi.Workload) {
			w.Namespace = "private"
			w.Services = map[string]*workloadapi.PortList{"private/priv": {}}
		}),

		service("default", "echo", "10.96.0.10", 80, 8080),
		service("default", "named", "10.96.0.11", 80, 0),
		service("default", "down", "10.96.0.12", 80, 8080),
		service("default", "empty", "10.96.0.13", 80, 8080),
		service("default", "waypoint", "10.96.0.20", 15008, 15008),
		service("default", "reviews", "10.96.0.30", 9080, 9080, func(s *workloadapi.Service) { s.Waypoint = byHost("waypoint") }),
		service("default", "reviews-byaddr", "10.96.0.31", 9080, 9080, func(s *workloadapi.Service) {
			s.Waypoint = &workloadapi.GatewayAddress{Destination: &workloadapi.GatewayAddress_Address{Address: &workloadapi.NetworkAddress{Address: ip("10.0.2.9")}}}
		}),
		service("default", "reviews-lost", "10.96.0.32", 9080, 9080, func(s *workloadapi.Service) { s.Waypoint = byHost("nowhere") }),
		service("default", "reviews-wpdown", "10.96.0.33", 9080, 9080, func(s *workloadapi.Service) { s.Waypoint = byHost("wpdown") }),
		service("default", "wpdown", "10.96.0.21", 15008, 15008),
		service("default", "weighted", "10.96.0.34", 9080, 9080, func(s *workloadapi.Service) {
			s.Waypoint = byHost("nowhere")
			s.WeightedWaypoints = []*workloadapi.WeightedWaypoint{{Destination: byHost("nowhere"), Weight: 0}, {Destination: byHost("waypoint"), Weight: 5}}
		}),
		service("default", "legacy", "10.96.0.40", 80, 8080),
		service("default", "pair", "10.96.0.41", 80, 8080),
		service("default", "cap", "10.96.0.42", 80, 8080),
		service("default", "dual", "fd00::96:43", 80, 8080),
		service("default", "lbpass", "10.96.0.46", 80, 8080, func(s *workloadapi.Service) {
			s.LoadBalancing = &workloadapi.LoadBalancing{Mode: workloadapi.LoadBalancing_PASSTHROUGH}
		}),
		service("default", "strictnode", "10.96.0.44", 80, 8080, func(s *workloadapi.Service) {
			s.LoadBalancing = &workloadapi.LoadBalancing{Mode: workloadapi.LoadBalancing_STRICT,
				RoutingPreference: []workloadapi.LoadBalancing_Scope{workloadapi.LoadBalancing_NODE}}
		}),
		service("default", "zonal", "10.96.0.47", 80, 8080, func(s *workloadapi.Service) {
			s.LoadBalancing = &workloadapi.LoadBalancing{Mode: workloadapi.LoadBalancing_FAILOVER,
				RoutingPreference: []workloadapi.LoadBalancing_Scope{workloadapi.LoadBalancing_ZONE, workloadapi.LoadBalancing_NODE}}
		}),
		service("private", "priv", "10.96.0.45", 80, 8080, func(s *workloadapi.Service) { s.Visibility = workloadapi.Service_NAMESPACE }),
	} {
		add(a)
	}
	// strictnode and zonal share pair's pods; pair-2 is in sleep's zone.
	for _, uid := range []string{"pair-1", "pair-2"} {
		up[uid].GetWorkload().Services["default/strictnode"] = &workloadapi.PortList{}
		up[uid].GetWorkload().Services["default/zonal"] = &workloadapi.PortList{}
	}
	up["sleep"].GetWorkload().Locality = &workloadapi.Locality{Zone: "z1"}
	up["pair-1"].GetWorkload().Locality = &workloadapi.Locality{Zone: "z2"}
	up["pair-2"].GetWorkload().Locality = &workloadapi.Locality{Zone: "z1"}
	s := state.NewStore()
	if err := s.ApplyAddresses(up, nil); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return s.Snapshot()
}
