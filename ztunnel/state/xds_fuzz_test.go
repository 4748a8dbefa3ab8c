package state

import (
	"errors"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/rbac"
)

func fzIP(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

// fzWorkload is a HBONE workload at addr, an endpoint of service svcKey
// (port 80 -> 8080) unless svcKey is empty.
func fzWorkload(uid, addr, svcKey string) *workloadapi.Address {
	w := &workloadapi.Workload{Uid: uid, Name: uid, Namespace: "ns", TunnelProtocol: workloadapi.TunnelProtocol_HBONE}
	if addr != "" {
		w.Addresses = [][]byte{fzIP(addr)}
	}
	if svcKey != "" {
		w.Services = map[string]*workloadapi.PortList{svcKey: {Ports: []*workloadapi.Port{{ServicePort: 80, TargetPort: 8080}}}}
	}
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

func fzService(host, vip string) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: &workloadapi.Service{
		Name: host, Namespace: "ns", Hostname: host,
		Addresses: []*workloadapi.NetworkAddress{{Address: fzIP(vip)}},
		Ports:     []*workloadapi.Port{{ServicePort: 80, TargetPort: 8080}},
	}}}
}

func fzPolicy(name string, scope security.Scope, action security.Action) *security.Authorization {
	return &security.Authorization{Name: name, Namespace: "ns", Scope: scope, Action: action}
}

const fzSvc = "ns/svc.ns.svc.cluster.local"

// fuzzBaseline is the last good state a fuzzed update lands on: two
// workloads in a service and a policy.
func fuzzBaseline(t *testing.T) *Store {
	t.Helper()
	s := NewStore()
	if err := s.ApplyAddresses(map[string]*workloadapi.Address{
		"c//Pod/ns/a": fzWorkload("c//Pod/ns/a", "10.0.0.1", fzSvc),
		"c//Pod/ns/b": fzWorkload("c//Pod/ns/b", "10.0.0.2", fzSvc),
		fzSvc:         fzService("svc.ns.svc.cluster.local", "10.96.0.1"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyAuthorizations(map[string]*security.Authorization{"ns/allow": fzPolicy("allow", security.Scope_NAMESPACE, security.Action_ALLOW)}, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzApplyXDSResources decodes arbitrary bytes as an istio.workload.Address
// and an istio.security.Authorization resource, as the xDS client does, and
// applies them under arbitrary resource names: the store must never panic;
// a rejected update must wrap ErrInvalid and leave the previous snapshot in
// place; an accepted one must give a snapshot whose lookups and policy
// evaluation work; and the store must keep taking good updates afterwards.
func FuzzApplyXDSResources(f *testing.F) {
	for _, s := range xdsSeeds() {
		f.Add(s.addr, s.addrName, s.auth, s.authName, s.remove)
	}
	f.Fuzz(func(t *testing.T, addrBytes []byte, addrName string, authBytes []byte, authName, remove string) {
		s := fuzzBaseline(t)

		var a workloadapi.Address
		if proto.Unmarshal(addrBytes, &a) == nil {
			before := s.Snapshot()
			err := s.ApplyAddresses(map[string]*workloadapi.Address{addrName: &a}, []string{remove})
			checkApplied(t, s, before, err)
		}
		var p security.Authorization
		if proto.Unmarshal(authBytes, &p) == nil {
			before := s.Snapshot()
			err := s.ApplyAuthorizations(map[string]*security.Authorization{authName: &p}, []string{remove})
			checkApplied(t, s, before, err)
		}
		exercise(t, s.Snapshot())

		// Still a working store: a good update goes through.
		before := s.Snapshot()
		good := fzWorkload("c//Pod/ns/z", "10.0.0.99", fzSvc)
		if err := s.ApplyAddresses(map[string]*workloadapi.Address{"c//Pod/ns/z": good}, nil); err != nil {
			t.Fatalf("good update after the fuzzed one: %v", err)
		}
		if w := s.Snapshot().WorkloadByUID("c//Pod/ns/z"); w == nil || s.Snapshot().Version() <= before.Version() {
			t.Fatal("good update after the fuzzed one not applied")
		}
	})
}

func checkApplied(t *testing.T, s *Store, before *Snapshot, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("rejection %v does not wrap ErrInvalid", err)
		}
		if s.Snapshot() != before {
			t.Fatal("a rejected update changed the snapshot")
		}
		return
	}
	if s.Snapshot() == before || s.Snapshot().Version() <= before.Version() {
		t.Fatal("an accepted update published no new snapshot")
	}
}

// exercise runs the readers' lookups over everything in a snapshot.
func exercise(t *testing.T, snap *Snapshot) {
	t.Helper()
	id := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "sa"}
	for _, w := range snap.Workloads() {
		if snap.WorkloadByUID(w.UID) != w {
			t.Fatalf("workload %q not found by its uid", w.UID)
		}
		for _, ip := range w.Addrs {
			if got := snap.WorkloadByNetworkIP(w.Network, ip); got == nil && !w.HostNetwork {
				t.Fatalf("workload %q not found by its address %v", w.UID, ip)
			}
			conn := rbac.Conn{SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: ip, DstPort: 8080, SrcIdentity: &id}
			rbac.Evaluate(snap.PoliciesFor(w), conn)
			conn.SrcIdentity = nil
			rbac.Evaluate(snap.PoliciesFor(w), conn)
		}
	}
	for _, svc := range snap.Services() {
		snap.EndpointsOf(svc)
		for _, ep := range snap.EndpointsOf(svc) {
			for port := range uint16(3) {
				ep.TargetPort(port * 80)
			}
		}
	}
	for _, p := range snap.Policies() {
		if snap.PolicyByName(rbac.Name(p)) == nil {
			t.Fatalf("policy %q not found by name", rbac.Name(p))
		}
	}
}

type xdsSeed struct {
	addr     []byte
	addrName string
	auth     []byte
	authName string
	remove   string
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func xdsSeeds() []xdsSeed {
	allow := fzPolicy("p", security.Scope_WORKLOAD_SELECTOR, security.Action_ALLOW)
	allow.Groups = []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
		SourceIps:        []*security.Address{{Address: netip.MustParseAddr("10.0.0.0").AsSlice(), Length: 8}},
		DestinationPorts: []uint32{8080},
		Principals:       []*security.StringMatch{{MatchType: &security.StringMatch_Prefix{Prefix: "spiffe://cluster.local/ns/ns/"}}},
		NotNamespaces:    []*security.StringMatch{{MatchType: &security.StringMatch_Exact{Exact: "evil"}}},
	}}}}}}
	deny := fzPolicy("d", security.Scope_GLOBAL, security.Action_DENY)
	deny.DryRun = true
	wp := fzWorkload("c//Pod/ns/w", "10.0.0.7", fzSvc)
	wp.GetWorkload().Waypoint = &workloadapi.GatewayAddress{
		Destination:   &workloadapi.GatewayAddress_Address{Address: &workloadapi.NetworkAddress{Address: netip.MustParseAddr("10.0.0.9").AsSlice()}},
		HboneMtlsPort: 15008,
	}
	bad := fzWorkload("c//Pod/ns/bad", "", "")
	bad.GetWorkload().Addresses = [][]byte{{1, 2, 3}}
	return []xdsSeed{
		{mustMarshal(fzWorkload("c//Pod/ns/new", "10.0.0.3", fzSvc)), "c//Pod/ns/new", mustMarshal(allow), "ns/p", ""},
		{mustMarshal(fzService("other.ns.svc.cluster.local", "10.96.0.2")), "ns/other.ns.svc.cluster.local", mustMarshal(deny), "ns/d", "c//Pod/ns/a"},
		{mustMarshal(wp), "c//Pod/ns/w", mustMarshal(fzPolicy("empty", security.Scope_NAMESPACE, security.Action_ALLOW)), "ns/empty", "ns/allow"},
		{mustMarshal(bad), "c//Pod/ns/bad", mustMarshal(allow), "ns/wrongname", ""},
		{mustMarshal(fzWorkload("c//Pod/ns/a", "fd00::1", "")), "c//Pod/ns/a", []byte{0xff, 0xff}, "", fzSvc},
	}
}
