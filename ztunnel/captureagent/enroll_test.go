package captureagent

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	ambientNS = Namespace{Name: "app", Labels: map[string]string{DataplaneModeLabel: DataplaneModeAmbient}}
	plainNS   = Namespace{Name: "app"}
	podIPs    = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
)

func TestEnrolled(t *testing.T) {
	now := time.Now()
	label := func(v string) map[string]string { return map[string]string{DataplaneModeLabel: v} }
	for _, tc := range []struct {
		name string
		ns   Namespace
		pod  Pod
		want bool
	}{
		{"namespace ambient enrolls", ambientNS, Pod{IPs: podIPs, Phase: "Running"}, true},
		{"namespace not labelled", plainNS, Pod{IPs: podIPs, Phase: "Running"}, false},
		{"namespace with another mode", Namespace{Labels: label("sidecar")}, Pod{IPs: podIPs}, false},
		{"namespace label none", Namespace{Labels: label(DataplaneModeNone)}, Pod{IPs: podIPs}, false},
		{"pod label ambient enrolls alone", plainNS, Pod{IPs: podIPs, Labels: label(DataplaneModeAmbient)}, true},
		{"pod label none opts out", ambientNS, Pod{IPs: podIPs, Labels: label(DataplaneModeNone)}, false},
		{"pod label with other value follows namespace", ambientNS, Pod{IPs: podIPs, Labels: label("other")}, true},
		{"pending pod with IP", ambientNS, Pod{IPs: podIPs, Phase: "Pending"}, true},
		{"hostNetwork never", ambientNS, Pod{IPs: podIPs, HostNetwork: true}, false},
		{"hostNetwork with pod label never", ambientNS, Pod{IPs: podIPs, HostNetwork: true, Labels: label(DataplaneModeAmbient)}, false},
		{"no IPs", ambientNS, Pod{Phase: "Pending"}, false},
		{"succeeded", ambientNS, Pod{IPs: podIPs, Phase: PodSucceeded}, false},
		{"failed", ambientNS, Pod{IPs: podIPs, Phase: PodFailed}, false},
		{"terminating stays enrolled", ambientNS, Pod{IPs: podIPs, Phase: "Running", DeletionTimestamp: &now}, true},
		{"sidecar injected skipped", ambientNS, Pod{IPs: podIPs, Annotations: map[string]string{SidecarStatusAnnotation: "{}"}}, false},
		{"sidecar injected with pod label skipped", plainNS, Pod{IPs: podIPs, Labels: label(DataplaneModeAmbient), Annotations: map[string]string{SidecarStatusAnnotation: ""}}, false},
		{"unknown namespace, pod label", Namespace{}, Pod{IPs: podIPs, Labels: label(DataplaneModeAmbient)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Enrolled(tc.ns, tc.pod); got != tc.want {
				t.Errorf("Enrolled = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTrimPod(t *testing.T) {
	del := metav1.NewTime(time.Unix(1000, 0))
	for _, tc := range []struct {
		name string
		in   *corev1.Pod
		want Pod
	}{
		{
			name: "dual stack from podIPs",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", Labels: map[string]string{"x": "y"}, DeletionTimestamp: &del},
				Spec:       corev1.PodSpec{NodeName: "n1"},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2",
					PodIPs: []corev1.PodIP{{IP: "10.0.0.2"}, {IP: "fd00::2"}}},
			},
			want: Pod{Namespace: "ns", Name: "a", NodeName: "n1", Labels: map[string]string{"x": "y"}, Phase: "Running",
				IPs:               []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")},
				DeletionTimestamp: &del.Time},
		},
		{
			name: "podIP only, hostNetwork",
			in: &corev1.Pod{
				Spec:   corev1.PodSpec{HostNetwork: true},
				Status: corev1.PodStatus{PodIP: "192.168.1.1"},
			},
			want: Pod{HostNetwork: true, IPs: []netip.Addr{netip.MustParseAddr("192.168.1.1")}},
		},
		{
			name: "bad address dropped",
			in:   &corev1.Pod{Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "nope"}}}},
			want: Pod{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TrimPod(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("TrimPod =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestSlimPod: the informer cache keeps what TrimPod reads, and of the
// annotations only the sidecar status.
func TestSlimPod(t *testing.T) {
	in := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", ResourceVersion: "7",
			Labels:        map[string]string{DataplaneModeLabel: DataplaneModeNone},
			Annotations:   map[string]string{SidecarStatusAnnotation: "{}", "big": "xxxx"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec:   corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.2", Conditions: []corev1.PodCondition{{Type: corev1.PodReady}}},
	}
	out, err := slimPod(in)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*corev1.Pod)
	if !reflect.DeepEqual(TrimPod(p), TrimPod(in)) {
		t.Errorf("TrimPod(slim) = %+v, want %+v", TrimPod(p), TrimPod(in))
	}
	if len(p.Annotations) != 1 || p.ManagedFields != nil || p.Spec.Containers != nil || p.Status.Conditions != nil || p.ResourceVersion != "7" {
		t.Errorf("slim pod keeps too much or too little: %+v", p)
	}
}
