package state

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func TestLoadLocalConfigExample(t *testing.T) {
	addrs, pols, err := LoadLocalConfig("testdata/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore()
	if err := s.ReplaceAddresses(addrs); err != nil {
		t.Fatalf("example addresses rejected: %v", err)
	}
	if err := s.ReplaceAuthorizations(pols); err != nil {
		t.Fatalf("example policies rejected: %v", err)
	}
	snap := s.Snapshot()
	if n := len(snap.Workloads()); n != 6 {
		t.Errorf("workloads = %d, want 6", n)
	}
	echo := snap.ServiceByVIP(netip.MustParseAddr("10.96.0.10"))
	if echo == nil || echo.Ports[80] != 8080 {
		t.Fatalf("echo service = %+v", echo)
	}
	if got := epUIDs(snap.EndpointsOf(echo)); !slices.Equal(got, []string{"Kubernetes//Pod/default/echo-1", "Kubernetes//Pod/default/echo-2"}) {
		t.Errorf("echo endpoints = %v", got)
	}
	reviews := snap.ServiceByHostname("default", "reviews.default.svc.cluster.local")
	if reviews == nil || reviews.Waypoint == nil || reviews.Waypoint.Hostname != "waypoint.default.svc.cluster.local" || reviews.Waypoint.Port != 15008 {
		t.Errorf("reviews waypoint = %+v", reviews)
	}
	web := snap.WorkloadByIP(netip.MustParseAddr("10.244.1.20"))
	if web == nil || web.HBONE() || web.Identity.ServiceAccount != "default" {
		t.Errorf("web = %+v", web)
	}
	echo1 := snap.WorkloadByUID("Kubernetes//Pod/default/echo-1")
	ps := snap.PoliciesFor(echo1)
	if len(ps) != 2 || ps[0].Name != "strict" || ps[1].Name != "allow-sleep" {
		t.Fatalf("PoliciesFor(echo-1) = %v", ps)
	}
	m := ps[1].Groups[0].Rules[0].Matches[0]
	if m.Principals[0].GetExact() != "cluster.local/ns/default/sa/sleep" || ps[0].Action != security.Action_DENY || ps[0].Groups[0].Rules[0].Matches[0].NotPrincipals[0].GetPresence() == nil {
		t.Errorf("policy conversion wrong: %v / %v", ps[1], ps[0])
	}
}

func TestParseLocalConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"unknown top-level field", "workload: []", `unknown field "workload"`},
		{"unknown nested field", "workloads:\n- uid: a\n  nodeName: x", `unknown field "nodeName"`},
		{"bad protocol", "workloads:\n- uid: a\n  protocol: QUIC", `workloads[0] (a): protocol: unknown value "QUIC" (want one of HBONE, LEGACY_ISTIO_MTLS, NONE)`},
		{"bad address", "workloads:\n- uid: a\n  addresses: [10.0.0]", "workloads[0] (a): addresses[0]"},
		{"bad vip", "services:\n- namespace: ns\n  hostname: h\n  vips: [nope]", `services[0] (ns/h): vips[0]: "nope"`},
		{"both waypoint kinds", "services:\n- namespace: ns\n  hostname: h\n  waypoint: {hostname: ns/w, address: 10.0.0.1}", "waypoint: set one of hostname and address"},
		{"bad service account", "policies:\n- name: p\n  namespace: ns\n  groups:\n  - rules:\n    - matches:\n      - serviceAccounts: [sleep]", `policies[0] (ns/p): groups[0].rules[0].matches[0].serviceAccounts[0]: "sleep"`},
		{"bad cidr", "policies:\n- name: p\n  namespace: ns\n  groups:\n  - rules:\n    - matches:\n      - sourceIps: [10.0.0.0/99]", "matches[0].sourceIps[0]"},
		{"duplicate uid", "workloads:\n- uid: a\n- uid: a", `duplicate uid "a"`},
		{"bad action", "policies:\n- name: p\n  namespace: ns\n  action: AUDIT", `action: unknown value "AUDIT"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseLocalConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseLocalConfigConversions(t *testing.T) {
	addrs, pols, err := ParseLocalConfig([]byte(`
workloads:
- uid: w
  namespace: ns
  addresses: ["10.0.0.1", "fd00::1"]
  protocol: hbone
  status: UNHEALTHY
  capacity: 3
  hostNetwork: true
  waypoint: {address: 10.0.0.9}
services:
- namespace: ns
  hostname: h
  vips: ["10.96.0.1", "net1/10.96.0.2", "10.97.0.0/16"]
  visibility: NAMESPACE
policies:
- name: p
  namespace: ns
  scope: namespace
  groups:
  - rules:
    - matches:
      - principals: ["*", "cluster.local/*", "*/sa/x", "exact"]
        sourceIps: ["10.0.0.1"]
        notDestinationPorts: [22]
`))
	if err != nil {
		t.Fatal(err)
	}
	w := addrs["w"].GetWorkload()
	if w.TunnelProtocol != workloadapi.TunnelProtocol_HBONE || w.Status != workloadapi.WorkloadStatus_UNHEALTHY ||
		w.Capacity.GetValue() != 3 || w.NetworkMode != workloadapi.NetworkMode_HOST_NETWORK || len(w.Addresses[1]) != 16 ||
		w.Waypoint.GetAddress() == nil {
		t.Errorf("workload = %v", w)
	}
	s := addrs["ns/h"].GetService()
	if len(s.Addresses) != 3 || s.Addresses[1].Network != "net1" || s.Addresses[2].GetLength() != 16 || s.Addresses[0].Length != nil ||
		s.Visibility != workloadapi.Service_NAMESPACE {
		t.Errorf("service = %v", s)
	}
	m := pols["ns/p"].Groups[0].Rules[0].Matches[0]
	if m.Principals[0].GetPresence() == nil || m.Principals[1].GetPrefix() != "cluster.local/" || m.Principals[2].GetSuffix() != "/sa/x" ||
		m.Principals[3].GetExact() != "exact" || m.SourceIps[0].Length != 32 || m.NotDestinationPorts[0] != 22 || pols["ns/p"].Scope != security.Scope_NAMESPACE {
		t.Errorf("match = %v", m)
	}
}

func TestLoadLocalConfigMissingFile(t *testing.T) {
	_, _, err := LoadLocalConfig(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}
