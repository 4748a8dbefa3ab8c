package model

import (
	"reflect"
	"testing"
	"time"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"istio.io/istio/pkg/workloadapi"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestTunnelProtocol(t *testing.T) {
	amb := map[string]string{LabelDataplaneMode: DataplaneModeAmbient}
	tests := []struct {
		name       string
		ns         map[string]string
		pod        Pod
		want       workloadapi.TunnelProtocol
		wantNative bool
	}{
		{"plain namespace", nil, Pod{}, workloadapi.TunnelProtocol_NONE, false},
		{"enrolled namespace", amb, Pod{}, workloadapi.TunnelProtocol_HBONE, false},
		{"pod opts out", amb, Pod{Labels: map[string]string{LabelDataplaneMode: "none"}}, workloadapi.TunnelProtocol_NONE, false},
		{"pod opts in", nil, Pod{Labels: map[string]string{LabelDataplaneMode: "ambient"}}, workloadapi.TunnelProtocol_HBONE, false},
		{"hostNetwork never captured", amb, Pod{HostNetwork: true}, workloadapi.TunnelProtocol_NONE, false},
		{"hostNetwork opt-in ignored", nil, Pod{HostNetwork: true, Labels: map[string]string{LabelDataplaneMode: "ambient"}}, workloadapi.TunnelProtocol_NONE, false},
		{"namespace other value", map[string]string{LabelDataplaneMode: "sidecar"}, Pod{}, workloadapi.TunnelProtocol_NONE, false},
		{"waypoint native tunnel", nil, Pod{Labels: map[string]string{LabelTunnel: "http"}}, workloadapi.TunnelProtocol_HBONE, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, native := TunnelProtocol(tt.ns, &tt.pod)
			if got != tt.want || native != tt.wantNative {
				t.Errorf("TunnelProtocol = %v,%v want %v,%v", got, native, tt.want, tt.wantNative)
			}
		})
	}
}

func TestWaypointBinding(t *testing.T) {
	tests := []struct {
		name    string
		obj, ns map[string]string
		want    WaypointRef
		wantOK  bool
	}{
		{"unbound", nil, nil, WaypointRef{}, false},
		{"namespace", nil, map[string]string{LabelUseWaypoint: "wp"}, WaypointRef{"app", "wp"}, true},
		{"object wins", map[string]string{LabelUseWaypoint: "mine"}, map[string]string{LabelUseWaypoint: "wp"}, WaypointRef{"app", "mine"}, true},
		{"object none disables namespace", map[string]string{LabelUseWaypoint: "none"}, map[string]string{LabelUseWaypoint: "wp"}, WaypointRef{}, false},
		{"namespace none", nil, map[string]string{LabelUseWaypoint: "none"}, WaypointRef{}, false},
		{"other namespace", map[string]string{LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "infra"}, nil, WaypointRef{"infra", "wp"}, true},
		{"namespace label's namespace", nil, map[string]string{LabelUseWaypoint: "wp", LabelUseWaypointNamespace: "infra"}, WaypointRef{"infra", "wp"}, true},
		{"object namespace label alone is ignored", map[string]string{LabelUseWaypointNamespace: "infra"}, map[string]string{LabelUseWaypoint: "wp"}, WaypointRef{"app", "wp"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := WaypointBinding(tt.obj, tt.ns, "app")
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("WaypointBinding = %v,%v want %v,%v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestWaypointAccepts(t *testing.T) {
	tests := []struct {
		waypointFor       string
		service, workload bool
	}{
		{"", true, false},
		{"service", true, false},
		{"workload", false, true},
		{"all", true, true},
		{"none", false, false},
	}
	for _, tt := range tests {
		if got := WaypointAccepts(tt.waypointFor, WaypointForService); got != tt.service {
			t.Errorf("WaypointAccepts(%q, service) = %v", tt.waypointFor, got)
		}
		if got := WaypointAccepts(tt.waypointFor, WaypointForWorkload); got != tt.workload {
			t.Errorf("WaypointAccepts(%q, workload) = %v", tt.waypointFor, got)
		}
	}
}

func TestAppProtocol(t *testing.T) {
	tests := []struct {
		sp   ServicePort
		want workloadapi.AppProtocol
	}{
		{ServicePort{Name: "http"}, workloadapi.AppProtocol_HTTP11},
		{ServicePort{Name: "http-web"}, workloadapi.AppProtocol_HTTP11},
		{ServicePort{Name: "http2"}, workloadapi.AppProtocol_HTTP2},
		{ServicePort{Name: "grpc-api"}, workloadapi.AppProtocol_GRPC},
		{ServicePort{Name: "tcp", AppProtocol: "grpc"}, workloadapi.AppProtocol_GRPC},
		{ServicePort{Name: "http", AppProtocol: "tcp"}, workloadapi.AppProtocol_UNKNOWN},
		{ServicePort{AppProtocol: "kubernetes.io/h2c"}, workloadapi.AppProtocol_HTTP2},
		{ServicePort{Name: "http", Protocol: "UDP"}, workloadapi.AppProtocol_UNKNOWN},
		{ServicePort{Name: "web"}, workloadapi.AppProtocol_UNKNOWN},
	}
	for _, tt := range tests {
		if got := AppProtocol(tt.sp); got != tt.want {
			t.Errorf("AppProtocol(%+v) = %v, want %v", tt.sp, got, tt.want)
		}
	}
}

func TestServicePortTarget(t *testing.T) {
	tests := []struct {
		sp   ServicePort
		want uint32
	}{
		{ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}, 8080},
		{ServicePort{Port: 80}, 80},
		{ServicePort{Port: 80, TargetPort: intstr.FromString("web")}, 0},
	}
	for _, tt := range tests {
		if got := servicePortTarget(tt.sp); got != tt.want {
			t.Errorf("servicePortTarget(%+v) = %d, want %d", tt.sp, got, tt.want)
		}
	}
}

func TestWorkloadNameAndType(t *testing.T) {
	tests := []struct {
		name     string
		pod      Pod
		wantName string
		wantType workloadapi.WorkloadType
	}{
		{"bare pod", Pod{Name: "p"}, "p", workloadapi.WorkloadType_POD},
		{"deployment", Pod{Name: "web-abc-x", Labels: map[string]string{"pod-template-hash": "abc"}, Owner: Owner{"ReplicaSet", "web-abc"}}, "web", workloadapi.WorkloadType_DEPLOYMENT},
		{"bare replicaset", Pod{Name: "rs-x", Owner: Owner{"ReplicaSet", "rs"}}, "rs", workloadapi.WorkloadType_POD},
		{"job", Pod{Name: "j-x", Owner: Owner{"Job", "migrate"}}, "migrate", workloadapi.WorkloadType_JOB},
		{"cronjob", Pod{Name: "j-x", Owner: Owner{"Job", "backup-28391234"}}, "backup", workloadapi.WorkloadType_CRONJOB},
		{"statefulset", Pod{Name: "db-0", Owner: Owner{"StatefulSet", "db"}}, "db", workloadapi.WorkloadType_POD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, typ := WorkloadNameAndType(&tt.pod)
			if n != tt.wantName || typ != tt.wantType {
				t.Errorf("got %q,%v want %q,%v", n, typ, tt.wantName, tt.wantType)
			}
		})
	}
}

func TestCanonicalService(t *testing.T) {
	tests := []struct {
		labels            map[string]string
		wantName, wantRev string
	}{
		{nil, "wl", "latest"},
		{map[string]string{"app": "a", "version": "v1"}, "a", "v1"},
		{map[string]string{"app": "a", "app.kubernetes.io/name": "k"}, "k", "latest"},
		{map[string]string{"app": "a", "service.istio.io/canonical-name": "c", "service.istio.io/canonical-revision": "r", "version": "v"}, "c", "r"},
	}
	for _, tt := range tests {
		n, r := CanonicalService(tt.labels, "wl")
		if n != tt.wantName || r != tt.wantRev {
			t.Errorf("CanonicalService(%v) = %q,%q want %q,%q", tt.labels, n, r, tt.wantName, tt.wantRev)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in          []string
		wantLen     []uint32
		wantInvalid bool
	}{
		{[]string{"10.0.0.0/8", "1.2.3.4", "fd00::/64", "::1"}, []uint32{8, 32, 64, 128}, false},
		{[]string{"::ffff:1.2.3.4"}, []uint32{32}, false},
		{[]string{"10.0.0.0/8", "10.0.0.0/33"}, nil, true},
		{[]string{"host.example"}, nil, true},
	}
	for _, tt := range tests {
		got, invalid := parseCIDRs(tt.in, "f", nil)
		if (len(invalid) > 0) != tt.wantInvalid {
			t.Errorf("parseCIDRs(%v) invalid = %v", tt.in, invalid)
		}
		var lens []uint32
		for _, a := range got {
			lens = append(lens, a.Length)
			if len(a.Address) != 4 && len(a.Address) != 16 {
				t.Errorf("parseCIDRs(%v): address of %d bytes", tt.in, len(a.Address))
			}
		}
		if !reflect.DeepEqual(lens, tt.wantLen) {
			t.Errorf("parseCIDRs(%v) lengths = %v, want %v", tt.in, lens, tt.wantLen)
		}
	}
}

func TestPeerAuthenticationKeys(t *testing.T) {
	const root = "istio-system"
	strict, permissive, disable, unset := modeStrict, modePermissive, modeDisable, modeUnset
	at := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	pa := func(name, ns string, sel bool, mode securityv1beta1.PeerAuthentication_MutualTLS_Mode, d int, ports map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode) PeerAuthentication {
		p := PeerAuthentication{Name: name, Namespace: ns, Mode: mode, Created: at(d), PortModes: ports}
		if sel {
			p.Selector = map[string]string{"app": "x"}
		}
		return p
	}
	const static = root + "/" + StaticStrictPolicyName
	tests := []struct {
		name string
		pas  []PeerAuthentication
		want []string
	}{
		{"none", nil, nil},
		{"mesh strict", []PeerAuthentication{pa("m", root, false, strict, 1, nil)}, []string{static}},
		{"oldest mesh wins", []PeerAuthentication{pa("m2", root, false, permissive, 2, nil), pa("m1", root, false, strict, 1, nil)}, []string{static}},
		{"namespace permissive overrides mesh", []PeerAuthentication{pa("m", root, false, strict, 1, nil), pa("n", "app", false, permissive, 1, nil)}, nil},
		{"namespace unset inherits", []PeerAuthentication{pa("m", root, false, strict, 1, nil), pa("n", "app", false, unset, 1, nil)}, []string{static}},
		{"workload strict", []PeerAuthentication{pa("w", "app", true, strict, 1, nil)}, []string{static}},
		{"workload disable overrides", []PeerAuthentication{pa("n", "app", false, strict, 1, nil), pa("w", "app", true, disable, 1, nil)}, nil},
		{"other namespace ignored", []PeerAuthentication{pa("n", "other", false, strict, 1, nil)}, nil},
		{"root selector ignored", []PeerAuthentication{pa("w", root, true, strict, 1, nil)}, nil},
		{"strict with permissive port", []PeerAuthentication{pa("w", "app", true, strict, 1, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{80: permissive})}, []string{"app/" + ConvertedPeerAuthenticationPrefix + "w"}},
		{"strict with strict port", []PeerAuthentication{pa("w", "app", true, strict, 1, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{80: strict})}, []string{static}},
		{"permissive with strict port", []PeerAuthentication{pa("w", "app", true, permissive, 1, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{80: strict})}, []string{"app/" + ConvertedPeerAuthenticationPrefix + "w"}},
		{"unset under strict, disable port", []PeerAuthentication{pa("m", root, false, strict, 1, nil), pa("w", "app", true, unset, 1, map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{80: disable})}, []string{"app/" + ConvertedPeerAuthenticationPrefix + "w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			byNS := map[string][]*PeerAuthentication{}
			for i := range tt.pas {
				byNS[tt.pas[i].Namespace] = append(byNS[tt.pas[i].Namespace], &tt.pas[i])
			}
			got := levelsFor(byNS, "app", root, map[string]string{"app": "x"}).keys(root)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("keys = %v, want %v", got, tt.want)
			}
			// Every referenced converted policy must exist.
			for _, k := range got {
				if k == static {
					continue
				}
				mesh, ns := namespaceLevels(byNS, "app", root)
				found := false
				for i := range tt.pas {
					if p := ConvertPeerAuthentication(&tt.pas[i], mesh, ns, root); p != nil && p.Namespace+"/"+p.Name == k {
						found = true
					}
				}
				if !found {
					t.Errorf("workload references %s but no such policy is generated", k)
				}
			}
		})
	}
}
