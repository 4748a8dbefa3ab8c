package nodelet

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestImageName(t *testing.T) {
	for ref, want := range map[string]string{
		"ambient/ztunnel:dev":                       "ztunnel",
		"ghcr.io/ambient-mesh/ztunnel:1.0":          "ztunnel",
		"localhost/ambient/ztunnel@sha256:abcdef":   "ztunnel",
		"localhost:5000/ambient/echo:v1@sha256:abc": "echo",
		"localhost:5000/echo":                       "echo",
		"ztunnel":                                   "ztunnel",
		"busybox:1.36":                              "busybox",
		"":                                          "",
	} {
		if got := ImageName(ref); got != want {
			t.Errorf("ImageName(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestTableResolver(t *testing.T) {
	r := NewDirResolver("/opt/bin", "ztunnel", "echo")
	if p, err := r.Resolve("ghcr.io/x/ztunnel:1"); err != nil || p != "/opt/bin/ztunnel" {
		t.Errorf("Resolve ztunnel = %q, %v", p, err)
	}
	_, err := r.Resolve("nginx:latest")
	if err == nil || !strings.Contains(err.Error(), `image "nginx:latest" has no local binary; known images: echo, ztunnel`) {
		t.Errorf("Resolve unknown: %v", err)
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "a", "B": "b$(A)", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":           "plain",
		"$(A)":            "a",
		"x$(A)y$(A)":      "xaya",
		"$(B)":            "b$(A)", // no recursive expansion
		"$(MISSING)":      "$(MISSING)",
		"$$(A)":           "$(A)",
		"$$":              "$",
		"$":               "$",
		"$(A":             "$(A",
		"cost $5":         "cost $5",
		"$(EMPTY)end":     "end",
		"$()":             "$()",
		"--ip=$(A):$$(B)": "--ip=a:$(B)",
	} {
		if got := Expand(in, lookup); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

type fakeRefs struct {
	cms     map[string]map[string]string
	secrets map[string]map[string][]byte
}

func (f fakeRefs) ConfigMap(name string) (map[string]string, bool, error) {
	d, ok := f.cms[name]
	return d, ok, nil
}

func (f fakeRefs) Secret(name string) (map[string][]byte, bool, error) {
	d, ok := f.secrets[name]
	return d, ok, nil
}

func TestResolveEnv(t *testing.T) {
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1",
			Labels: map[string]string{"app": "web", "v": "1"}, Annotations: map[string]string{"x/y": "z"}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
	}
	refs := fakeRefs{
		cms:     map[string]map[string]string{"cm": {"K1": "cv1", "K2": "cv2"}},
		secrets: map[string]map[string][]byte{"sec": {"S": []byte("sv")}},
	}
	addrs := PodAddrs{PodIPs: []string{"10.0.0.5", "fd00::5"}, HostIPs: []string{"172.18.0.2"}}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	c := &corev1.Container{
		Name: "c",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
			{Prefix: "P_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: &yes}},
		},
		Env: []corev1.EnvVar{
			field("POD_NAME", "metadata.name"),
			field("POD_NS", "metadata.namespace"),
			field("UID", "metadata.uid"),
			field("APP", "metadata.labels['app']"),
			field("ANN", "metadata.annotations['x/y']"),
			field("NODE", "spec.nodeName"),
			field("SA", "spec.serviceAccountName"),
			field("IP", "status.podIP"),
			field("IPS", "status.podIPs"),
			field("HOST_IP", "status.hostIP"),
			field("HOST_IPS", "status.hostIPs"),
			{Name: "K1", Value: "override-$(POD_NAME)"},
			{Name: "ADDR", Value: "$(IP):$(LATER)"},
			{Name: "LATER", Value: "l"},
			{Name: "SVC", Value: "$(KUBERNETES_SERVICE_HOST)"},
			{Name: "CMK", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "K2"}}},
			{Name: "SK", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "S"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "missing", Optional: &yes}}},
		},
	}
	got, err := ResolveEnv(pod, c, addrs, []EnvVar{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}}, refs)
	if err != nil {
		t.Fatal(err)
	}
	wantMap := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "K1": "override-p", "K2": "cv2", "P_S": "sv",
		"POD_NAME": "p", "POD_NS": "ns", "UID": "u1", "APP": "web", "ANN": "z", "NODE": "n1", "SA": "sa",
		"IP": "10.0.0.5", "IPS": "10.0.0.5,fd00::5", "HOST_IP": "172.18.0.2", "HOST_IPS": "172.18.0.2",
		"ADDR": "10.0.0.5:$(LATER)", "LATER": "l", "SVC": "10.96.0.1", "CMK": "cv2", "SK": "sv",
	}
	gotMap := map[string]string{}
	for _, e := range got {
		if _, dup := gotMap[e.Name]; dup {
			t.Errorf("duplicate env %s", e.Name)
		}
		gotMap[e.Name] = e.Value
	}
	if !reflect.DeepEqual(gotMap, wantMap) {
		t.Errorf("env:\n got %v\nwant %v", gotMap, wantMap)
	}
	if got[0].Name != "KUBERNETES_SERVICE_HOST" || got[1].Name != "K1" {
		t.Errorf("order: base first, then envFrom: %v", got[:2])
	}

	// A missing non-optional reference is an error naming it.
	c2 := &corev1.Container{Name: "c2", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k"}}}}}
	if _, err := ResolveEnv(pod, c2, addrs, nil, refs); err == nil || !strings.Contains(err.Error(), `configmap "absent"`) {
		t.Errorf("missing configmap: %v", err)
	}
}

func TestFieldPathLabelsFormat(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"b": "2", "a": "1"}}}
	got, err := FieldPath(pod, "metadata.labels", PodAddrs{})
	if err != nil || got != "a=\"1\"\nb=\"2\"" {
		t.Errorf("labels = %q, %v", got, err)
	}
	if _, err := FieldPath(pod, "spec.bogus", PodAddrs{}); err == nil {
		t.Error("unsupported field path accepted")
	}
}

func TestBuildArgv(t *testing.T) {
	env := []EnvVar{{"PORT", "8080"}, {"NAME", "x"}}
	known := func(s string) (string, bool) {
		switch s {
		case "ztunnel", "/usr/local/bin/ztunnel":
			return "/bin/dir/ztunnel", true
		}
		return "", false
	}
	for _, tc := range []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"entrypoint only", nil, nil, []string{"/bin/dir/img"}},
		{"args only", nil, []string{"--port=$(PORT)"}, []string{"/bin/dir/img", "--port=8080"}},
		{"command replaces entrypoint", []string{"/bin/sh", "-c", "echo $(NAME)"}, []string{"a"}, []string{"/bin/sh", "-c", "echo x", "a"}},
		{"command names a known binary by path", []string{"/usr/local/bin/ztunnel", "proxy"}, nil, []string{"/bin/dir/ztunnel", "proxy"}},
		{"command names a known binary by name", []string{"ztunnel"}, []string{"$(MISSING)"}, []string{"/bin/dir/ztunnel", "$(MISSING)"}},
	} {
		got := BuildArgv("/bin/dir/img", tc.command, tc.args, env, known)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := DefaultBackoff
	var got []time.Duration
	step := 0
	for range 8 {
		var d time.Duration
		step, d = b.Next(step, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schedule %v, want %v", got, want)
	}
	if s, d := b.Next(step, 10*time.Minute); s != 1 || d != 10*time.Second {
		t.Errorf("after a long run: step %d delay %v, want 1, 10s", s, d)
	}
	short := Backoff{Base: time.Second, Max: 3 * time.Second, ResetAfter: time.Minute}
	if _, d := short.Next(2, 0); d != 3*time.Second {
		t.Errorf("capped delay %v", d)
	}
}

func TestProbeState(t *testing.T) {
	for _, tc := range []struct {
		name       string
		initial    bool
		seq        []bool
		succ, fail int32
		want       []bool
	}{
		{"readiness flips on first success", false, []bool{false, true, false, false, false}, 1, 3, []bool{false, true, true, true, false}},
		{"success threshold 2", false, []bool{true, false, true, true}, 2, 1, []bool{false, false, false, true}},
		{"liveness fails after threshold", true, []bool{false, false, true, false, false, false}, 1, 3, []bool{true, true, true, true, true, false}},
		{"zero thresholds mean 1", true, []bool{false, true}, 0, 0, []bool{false, true}},
	} {
		s := ProbeState{Result: tc.initial}
		var got []bool
		for _, ok := range tc.seq {
			s = s.Observe(ok, tc.succ, tc.fail)
			got = append(got, s.Result)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMapHostPath(t *testing.T) {
	n := Node{HostPathRoot: "/state/node1/host", BPFFSPath: "/state/node1/bpffs"}
	for _, tc := range []struct {
		in, want string
		real     bool
	}{
		{"/sys/fs/bpf", "/state/node1/bpffs", false},
		{"/sys/fs/bpf/ambient", "/state/node1/bpffs/ambient", false},
		{"/sys/fs/bpfx", "/sys/fs/bpfx", true},
		{"/sys/fs/cgroup", "/sys/fs/cgroup", true},
		{"/proc", "/proc", true},
		{"/dev/net/tun", "/dev/net/tun", true},
		{"/lib/modules", "/lib/modules", true},
		{"/var/run/ztunnel", "/state/node1/host/var/run/ztunnel", false},
		{"/var/../etc/x/", "/state/node1/host/etc/x", false},
		{"/procfoo", "/state/node1/host/procfoo", false},
	} {
		got, real := MapHostPath(n, tc.in)
		if got != tc.want || real != tc.real {
			t.Errorf("MapHostPath(%q) = %q, %v; want %q, %v", tc.in, got, real, tc.want, tc.real)
		}
	}
}

func TestBuildNodeStatus(t *testing.T) {
	n := Node{Name: "node1", IP: netip.MustParseAddr("172.18.0.2")}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := BuildNodeStatus(n, corev1.NodeStatus{}, t0)
	ready := findNodeCond(st, corev1.NodeReady)
	if ready == nil || ready.Status != corev1.ConditionTrue {
		t.Fatalf("Ready condition %v", ready)
	}
	if st.Addresses[0] != (corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}) {
		t.Errorf("addresses %v", st.Addresses)
	}
	if q := st.Allocatable[corev1.ResourcePods]; q.Value() != 110 {
		t.Errorf("allocatable pods %v", q.String())
	}
	t1 := t0.Add(time.Minute)
	st2 := BuildNodeStatus(n, st, t1)
	r2 := findNodeCond(st2, corev1.NodeReady)
	if !r2.LastTransitionTime.Time.Equal(t0) || !r2.LastHeartbeatTime.Time.Equal(t1) {
		t.Errorf("transition %v heartbeat %v; want %v, %v", r2.LastTransitionTime, r2.LastHeartbeatTime, t0, t1)
	}
	prev := *st.DeepCopy()
	findNodeCond(prev, corev1.NodeReady).Status = corev1.ConditionUnknown
	r3 := findNodeCond(BuildNodeStatus(n, prev, t1), corev1.NodeReady)
	if !r3.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("Unknown→True keeps old transition time %v", r3.LastTransitionTime)
	}
}

func findNodeCond(st corev1.NodeStatus, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

func TestKeyFiles(t *testing.T) {
	data := map[string][]byte{"a": []byte("1"), "b": []byte("2")}
	got, err := keyFiles("configmap", "cm", data, nil, nil)
	if err != nil || len(got) != 2 {
		t.Errorf("all keys: %v %v", got, err)
	}
	got, err = keyFiles("configmap", "cm", data, []corev1.KeyToPath{{Key: "a", Path: "dir/x"}}, nil)
	if err != nil || !reflect.DeepEqual(got, map[string][]byte{"dir/x": []byte("1")}) {
		t.Errorf("items: %v %v", got, err)
	}
	if _, err := keyFiles("configmap", "cm", data, []corev1.KeyToPath{{Key: "zz", Path: "x"}}, nil); err == nil {
		t.Error("missing key accepted")
	}
}

func TestUIDFromPodDir(t *testing.T) {
	for dir, want := range map[string]string{
		"default_web_0b6c-11":     "0b6c-11",
		"kube-system_ztunnel-x_u": "u",
		"created-mountpoints.txt": "",
		"a_b":                     "",
		"a_b_":                    "",
		"a_b_c_d":                 "",
	} {
		if got := uidFromPodDir(dir); got != want {
			t.Errorf("uidFromPodDir(%q) = %q, want %q", dir, got, want)
		}
	}
}
