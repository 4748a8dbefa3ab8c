package nodelet

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodResolvConf(t *testing.T) {
	cluster := &DNSConfig{Nameserver: netip.MustParseAddr("172.30.0.1"), Domain: "cluster.local"}
	host := ResolvConf{Nameservers: []string{"10.255.255.53"}, Searches: []string{"corp.example"}, Options: []string{"ndots:1", "edns0"}}
	two := "2"
	pod := func(hostNet bool, policy corev1.DNSPolicy, dc *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "foo", Name: "p"},
			Spec:       corev1.PodSpec{HostNetwork: hostNet, DNSPolicy: policy, DNSConfig: dc},
		}
	}
	const clusterFile = "search foo.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.30.0.1\noptions ndots:5\n"
	many := make([]string, 40)
	for i := range many {
		many[i] = string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example"
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		cluster *DNSConfig
		want    string // "" = keep the host's file
	}{
		{"cluster DNS off", pod(false, corev1.DNSClusterFirst, nil), nil, ""},
		{"cluster DNS off ignores dnsConfig", pod(false, corev1.DNSNone, &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}}), nil, ""},
		{"default policy is ClusterFirst", pod(false, "", nil), cluster, clusterFile},
		{"ClusterFirst", pod(false, corev1.DNSClusterFirst, nil), cluster, clusterFile},
		{"domain with a trailing dot", pod(false, corev1.DNSClusterFirst, nil), &DNSConfig{Nameserver: cluster.Nameserver, Domain: "cluster.local."}, clusterFile},
		{"ClusterFirstWithHostNet on a pod network", pod(false, corev1.DNSClusterFirstWithHostNet, nil), cluster, clusterFile},
		{"hostNetwork ClusterFirstWithHostNet", pod(true, corev1.DNSClusterFirstWithHostNet, nil), cluster, clusterFile},
		{"hostNetwork ClusterFirst keeps the host's", pod(true, corev1.DNSClusterFirst, nil), cluster, ""},
		{"hostNetwork default policy keeps the host's", pod(true, "", nil), cluster, ""},
		{"Default keeps the host's", pod(false, corev1.DNSDefault, nil), cluster, ""},
		{"Default with dnsConfig merges into the host's", pod(false, corev1.DNSDefault, &corev1.PodDNSConfig{
			Nameservers: []string{"10.255.255.53", "192.0.2.1"},
			Searches:    []string{"x.example"},
			Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "rotate"}},
		}), cluster, "search corp.example x.example\nnameserver 10.255.255.53\nnameserver 192.0.2.1\noptions ndots:2 edns0 rotate\n"},
		{"hostNetwork ClusterFirst with dnsConfig merges into the host's", pod(true, corev1.DNSClusterFirst, &corev1.PodDNSConfig{Searches: []string{"y.example"}}),
			cluster, "search corp.example y.example\nnameserver 10.255.255.53\noptions ndots:1 edns0\n"},
		{"ClusterFirst with dnsConfig additions", pod(false, corev1.DNSClusterFirst, &corev1.PodDNSConfig{
			Nameservers: []string{"172.30.0.1", "192.0.2.53"},
			Searches:    []string{"svc.cluster.local", "my.dns.search.suffix"},
			Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}},
		}), cluster, "search foo.svc.cluster.local svc.cluster.local cluster.local my.dns.search.suffix\nnameserver 172.30.0.1\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"},
		{"None uses only dnsConfig", pod(false, corev1.DNSNone, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.1"}, Searches: []string{"ns1.svc.cluster-domain.example"},
		}), cluster, "search ns1.svc.cluster-domain.example\nnameserver 192.0.2.1\n"},
		{"None without dnsConfig is empty", pod(false, corev1.DNSNone, nil), cluster, "\x00"},
		{"at most three nameservers", pod(false, corev1.DNSClusterFirst, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
		}), cluster, "search foo.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.30.0.1\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:5\n"},
		{"at most 32 search domains", pod(false, corev1.DNSNone, &corev1.PodDNSConfig{Searches: many}), cluster,
			"search " + joinSp(many[:32]) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, ok := PodResolvConf(tc.pod, tc.cluster, host)
			got := string(rc.Render())
			if !ok {
				got = ""
			} else if got == "" {
				got = "\x00"
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func joinSp(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

func TestParseResolvConf(t *testing.T) {
	in := "# generated\n; comment\nnameserver 10.0.0.1\nnameserver  10.0.0.2 \ndomain old.example\nsearch a.example b.example\noptions ndots:2\noptions edns0 timeout:1\nsortlist 1.2.3.4\nnameserver\n"
	want := ResolvConf{Nameservers: []string{"10.0.0.1", "10.0.0.2"}, Searches: []string{"a.example", "b.example"}, Options: []string{"ndots:2", "edns0", "timeout:1"}}
	if got := ParseResolvConf([]byte(in)); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseResolvConf = %+v, want %+v", got, want)
	}
	if got := ParseResolvConf(want.Render()); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v, want %+v", got, want)
	}
}

func TestWithResolvConf(t *testing.T) {
	rc := &shim.Mount{Source: "/s/.resolv.conf", Target: ResolvConfPath, ReadOnly: true}
	etc := shim.Mount{Source: "/v/etc", Target: "/etc"}
	own := shim.Mount{Source: "/v/mine", Target: ResolvConfPath}
	for _, tc := range []struct {
		name string
		in   []shim.Mount
		m    *shim.Mount
		want []shim.Mount
	}{
		{"off", []shim.Mount{etc}, nil, []shim.Mount{etc}},
		{"added after a parent", []shim.Mount{etc}, rc, []shim.Mount{etc, *rc}},
		{"the container's own wins", []shim.Mount{own}, rc, []shim.Mount{own}},
	} {
		if got := withResolvConf(tc.in, tc.m); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestResolvConfInContainers runs pods through the shim: a ClusterFirst pod
// sees the cluster resolv.conf at /etc/resolv.conf, a hostNetwork pod the
// host's.
func TestResolvConfInContainers(t *testing.T) {
	h := newHarness(t)
	h.cfg.DNS = &DNSConfig{Nameserver: netip.MustParseAddr("172.30.0.1"), Domain: "cluster.local"}
	h.start()
	hostRC, err := os.ReadFile(HostResolvConf)
	if err != nil {
		t.Skipf("no host resolv.conf: %v", err)
	}
	for _, tc := range []struct {
		name    string
		hostNet bool
		want    string
	}{
		{"clusterfirst", false, "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.30.0.1\noptions ndots:5\n"},
		{"hostnet", true, string(hostRC)},
	} {
		out := filepath.Join(h.tmp, "mnt", tc.name)
		h.createPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: tc.name},
			Spec: corev1.PodSpec{
				HostNetwork:                  tc.hostNet,
				AutomountServiceAccountToken: new(bool),
				Volumes:                      []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				Containers: []corev1.Container{{
					Name: "c", Image: "shell",
					Command:      []string{"sh", "-c", "cat /etc/resolv.conf > " + out + "/rc.tmp && mv " + out + "/rc.tmp " + out + "/rc; exec sleep 100000"},
					VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: out}},
				}},
			},
		})
		file := filepath.Join(h.cfg.StateDir, "pods", "default_"+tc.name+"_"+tc.name+"-uid", "volumes", "out", "rc")
		h.waitFile(file)
		if got, err := os.ReadFile(file); err != nil || string(got) != tc.want {
			t.Errorf("%s: /etc/resolv.conf = %q (%v), want %q", tc.name, got, err, tc.want)
		}
	}
	if got, _ := os.ReadFile(HostResolvConf); string(got) != string(hostRC) {
		t.Errorf("the host's resolv.conf changed: %q", got)
	}
}
