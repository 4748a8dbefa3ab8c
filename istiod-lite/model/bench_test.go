package model

import (
	"fmt"
	"net/netip"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// syntheticInput builds nsCount namespaces with svcPerNS services and
// podsPerNS pods each; every pod backs one service; one selector ALLOW and
// one namespace DENY per namespace; a mesh-wide STRICT PeerAuthentication.
func syntheticInput(nsCount, svcPerNS, podsPerNS int) Input {
	var in Input
	for n := 0; n < nsCount; n++ {
		ns := fmt.Sprintf("ns-%d", n)
		in.Namespaces = append(in.Namespaces, Namespace{Name: ns, Labels: map[string]string{LabelDataplaneMode: DataplaneModeAmbient}})
		for s := 0; s < svcPerNS; s++ {
			in.Services = append(in.Services, Service{
				Name: fmt.Sprintf("svc-%d", s), Namespace: ns,
				ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(n), byte(s)})},
				Selector:   map[string]string{"app": fmt.Sprintf("app-%d", s)},
				Ports: []ServicePort{
					{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
					{Name: "grpc", Port: 9000, TargetPort: intstr.FromInt32(9000)},
				},
			})
		}
		for p := 0; p < podsPerNS; p++ {
			in.Pods = append(in.Pods, Pod{
				Name: fmt.Sprintf("pod-%d", p), Namespace: ns,
				Labels:         map[string]string{"app": fmt.Sprintf("app-%d", p%svcPerNS), "version": "v1"},
				IPs:            []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n), byte(p / 256), byte(p % 256)})},
				NodeName:       fmt.Sprintf("node-%d", p%20),
				ServiceAccount: "default",
				Ready:          true,
				Phase:          "Running",
				ContainerPorts: map[string]uint32{"http": 8080},
			})
		}
		in.AuthorizationPolicies = append(in.AuthorizationPolicies,
			AuthorizationPolicy{Name: "allow", Namespace: ns, Spec: &securityv1beta1.AuthorizationPolicy{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "app-0"}},
				Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
					Principals: []string{"cluster.local/ns/" + ns + "/sa/client"},
					IpBlocks:   []string{"10.0.0.0/8"},
				}}}}},
			}},
			AuthorizationPolicy{Name: "deny", Namespace: ns, Spec: &securityv1beta1.AuthorizationPolicy{
				Action: securityv1beta1.AuthorizationPolicy_DENY,
				Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
					Namespaces: []string{"untrusted"},
				}}}}},
			}},
		)
	}
	in.PeerAuthentications = append(in.PeerAuthentications, PeerAuthentication{Name: "default", Namespace: "istio-system", Mode: modeStrict})
	return in
}

func TestSyntheticBuild(t *testing.T) {
	s := Build(syntheticInput(3, 2, 4), Config{})
	if len(s.Workloads) != 12 || len(s.Services) != 6 || len(s.Policies) != 7 {
		t.Fatalf("got %d workloads, %d services, %d policies; want 12, 6, 7", len(s.Workloads), len(s.Services), len(s.Policies))
	}
	w := s.Workloads[WorkloadUID("Kubernetes", "ns-1", "pod-2")]
	if w == nil || len(w.Services) != 1 || w.Services["ns-1/svc-0.ns-1.svc.cluster.local"].GetPorts()[0].GetTargetPort() != 8080 {
		t.Fatalf("pod-2 services = %v", w.GetServices())
	}
	if got := w.GetAuthorizationPolicies(); len(got) != 2 || got[0] != "ns-1/allow" || got[1] != "istio-system/"+StaticStrictPolicyName {
		t.Fatalf("pod-2 policies = %v", got)
	}
}

func BenchmarkBuild10kPods(b *testing.B) {
	in := syntheticInput(100, 10, 100) // 10,000 pods, 1,000 services
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s := Build(in, Config{})
		if len(s.Workloads) != 10000 {
			b.Fatalf("%d workloads", len(s.Workloads))
		}
	}
}

func BenchmarkResourcesAndDiff10kPods(b *testing.B) {
	in := syntheticInput(100, 10, 100)
	prev := Build(in, Config{}).Resources()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		next := Build(in, Config{}).Resources()
		changed, removed := Diff(prev[TypeAddress], next[TypeAddress])
		if len(changed) != 0 || len(removed) != 0 {
			b.Fatalf("unexpected diff: %d changed, %d removed", len(changed), len(removed))
		}
	}
}
