package state

import (
	"errors"
	"strings"
	"testing"

	"istio.io/istio/pkg/workloadapi"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestParseWorkload(t *testing.T) {
	tests := []struct {
		name    string
		resName string
		mod     func(*workloadapi.Workload)
		wantErr string
	}{
		{name: "valid", resName: "w1"},
		{name: "missing uid", resName: "w1", mod: func(w *workloadapi.Workload) { w.Uid = "" }, wantErr: `workload "w1": field uid: missing`},
		{name: "uid differs from name", resName: "w2", wantErr: `workload "w2": field uid: "w1" differs`},
		{name: "bad address length", resName: "w1", mod: func(w *workloadapi.Workload) { w.Addresses = append(w.Addresses, []byte{1, 2, 3}) },
			wantErr: `workload "w1": field addresses[1]: want 4 or 16 bytes, got 3`},
		{name: "unknown tunnel protocol", resName: "w1", mod: func(w *workloadapi.Workload) { w.TunnelProtocol = 9 }, wantErr: "field tunnel_protocol: unknown value 9"},
		{name: "unknown status", resName: "w1", mod: func(w *workloadapi.Workload) { w.Status = 5 }, wantErr: "field status: unknown value 5"},
		{name: "waypoint without destination", resName: "w1", mod: func(w *workloadapi.Workload) { w.Waypoint = &workloadapi.GatewayAddress{} },
			wantErr: `workload "w1": field waypoint: destination: missing`},
		{name: "waypoint bad address", resName: "w1", mod: func(w *workloadapi.Workload) {
			w.Waypoint = &workloadapi.GatewayAddress{Destination: &workloadapi.GatewayAddress_Address{Address: &workloadapi.NetworkAddress{Address: []byte{1}}}}
		}, wantErr: "field waypoint: address: want 4 or 16 bytes, got 1"},
		{name: "service key without namespace", resName: "w1", mod: inSvc("echo", 80, 8080), wantErr: `field services: key "echo" is not namespace/hostname`},
		{name: "service port zero", resName: "w1", mod: inSvc("ns/echo", 0, 8080), wantErr: "field services[ns/echo].ports[0]: service_port 0 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := wl("w1", "ns", "10.0.0.1").GetWorkload()
			if tt.mod != nil {
				tt.mod(p)
			}
			w, err := ParseWorkload(tt.resName, p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseWorkload: %v", err)
				}
				if w.UID != "w1" || len(w.Addrs) != 1 || w.Addrs[0].String() != "10.0.0.1" || !w.HBONE() || !w.Healthy || w.Capacity != 1 {
					t.Errorf("parsed %+v", w)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseWorkload = %v, want error containing %q wrapping ErrInvalid", err, tt.wantErr)
			}
		})
	}
}

func TestWorkloadIdentityDefaults(t *testing.T) {
	p := wl("w1", "prod", "10.0.0.1").GetWorkload()
	w, err := ParseWorkload("w1", p)
	if err != nil {
		t.Fatal(err)
	}
	if want := (spiffe.Identity{TrustDomain: "cluster.local", Namespace: "prod", ServiceAccount: "default"}); w.Identity != want {
		t.Errorf("identity = %v, want %v", w.Identity, want)
	}
	p.TrustDomain, p.ServiceAccount = "example.org", "api"
	w, _ = ParseWorkload("w1", p)
	if got := w.Identity.String(); got != "spiffe://example.org/ns/prod/sa/api" {
		t.Errorf("identity = %s", got)
	}
}

func TestParseService(t *testing.T) {
	length := func(n uint32) *uint32 { return &n }
	tests := []struct {
		name    string
		resName string
		mod     func(*workloadapi.Service)
		wantErr string
	}{
		{name: "valid", resName: "ns/echo"},
		{name: "name mismatch", resName: "echo", wantErr: `service "echo": field namespace/hostname: "ns/echo" differs`},
		{name: "missing hostname", resName: "ns/echo", mod: func(s *workloadapi.Service) { s.Hostname = "" }, wantErr: "field hostname: missing"},
		{name: "bad vip", resName: "ns/echo", mod: func(s *workloadapi.Service) { s.Addresses[0].Address = []byte{1, 2} }, wantErr: "field addresses[0].address: want 4 or 16 bytes, got 2"},
		{name: "prefix too long", resName: "ns/echo", mod: func(s *workloadapi.Service) { s.Addresses[0].Length = length(40) }, wantErr: "field addresses[0].length: 40 exceeds 32 bits"},
		{name: "target port too big", resName: "ns/echo", mod: func(s *workloadapi.Service) { s.Ports[0].TargetPort = 70000 }, wantErr: "field ports[0]: target_port 70000 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := svc("ns", "echo", "10.96.0.1").GetService()
			if tt.mod != nil {
				tt.mod(p)
			}
			s, err := ParseService(tt.resName, p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseService: %v", err)
				}
				if s.Key != "ns/echo" || len(s.VIPs) != 1 || s.Ports[80] != 8080 {
					t.Errorf("parsed %+v", s)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseService = %v, want error containing %q wrapping ErrInvalid", err, tt.wantErr)
			}
		})
	}
}
