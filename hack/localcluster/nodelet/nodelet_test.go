package nodelet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim/shimtest"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestMain(m *testing.M) {
	shimtest.Dispatch()
	if len(os.Args) == 4 && os.Args[1] == "http-server" {
		// A container image for tests: serves a directory over HTTP.
		err := http.ListenAndServe(os.Args[2], http.FileServer(http.Dir(os.Args[3])))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fakeNet hands every pod the test's netns, with 127.0.0.1 as its IP.
type fakeNet struct {
	netns     string
	mu        sync.Mutex
	setups    map[string]int
	teardowns map[string]int
}

func (f *fakeNet) SetupPod(_ context.Context, key string) (PodNet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups[key]++
	return PodNet{IP: netip.MustParseAddr("127.0.0.1"), NetnsPath: f.netns}, nil
}

func (f *fakeNet) TeardownPod(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.teardowns[key]++
	return nil
}

func (f *fakeNet) tornDown(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.teardowns[key]
}

type harness struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	real   bool // a real API server: it assigns UIDs
	net    *fakeNet
	cfg    Config
	tmp    string
	cancel context.CancelFunc
	done   chan error

	tokenTTL time.Duration // 0: one hour, tokens without a serial
	tokens   atomic.Int32
}

func newHarness(t *testing.T) *harness {
	shimtest.SkipUnlessRoot(t)
	netns, _ := shimtest.NewNetns(t)
	tmp := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{}
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "node1-uid"}})
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca, ok := a.(k8stesting.CreateAction)
		if !ok || ca.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := ca.GetObject().(*authv1.TokenRequest)
		aud := strings.Join(req.Spec.Audiences, ",")
		if req.Spec.BoundObjectRef == nil || req.Spec.BoundObjectRef.Kind != "Pod" {
			return true, nil, errors.New("token not bound to a pod")
		}
		out := req.DeepCopy()
		out.Status.Token = fmt.Sprintf("token-for-%s-%s-aud=%s", a.GetNamespace(), req.Spec.BoundObjectRef.Name, aud)
		out.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(time.Hour))
		if h.tokenTTL != 0 {
			out.Status.Token += fmt.Sprintf("#%d", h.tokens.Add(1))
			out.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(h.tokenTTL))
		}
		return true, out, nil
	})
	caFile := filepath.Join(tmp, "ca.crt")
	if err := os.WriteFile(caFile, []byte("FAKE CA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.t, h.client, h.tmp, h.ns = t, client, tmp, "default"
	h.net = &fakeNet{netns: netns, setups: map[string]int{}, teardowns: map[string]int{}}
	h.cfg = Config{
		Marker: "nodelet-test",
		Client: client,
		Node: Node{Name: "node1", IP: netip.MustParseAddr("127.0.0.1"), NetnsPath: netns,
			HostPathRoot: filepath.Join(tmp, "hostroot"), BPFFSPath: filepath.Join(tmp, "bpffs")},
		Net:             h.net,
		Images:          TableResolver{Table: map[string]string{"shell": "/bin/sh", "testbin": self, "unbuilt": filepath.Join(tmp, "no-such-binary")}},
		StateDir:        filepath.Join(tmp, "state"),
		APIServerCAFile: caFile,
		ServiceHost:     "10.96.0.1", ServicePort: "443",
		Logger:                zaptest.NewLogger(t),
		Backoff:               Backoff{Base: time.Second, Max: 2 * time.Second, ResetAfter: time.Minute},
		HeartbeatInterval:     200 * time.Millisecond,
		RetryInterval:         200 * time.Millisecond,
		VolumeRefreshInterval: 200 * time.Millisecond,
		StopGracePeriod:       2 * time.Second,
	}
	t.Cleanup(h.removeMountPoints)
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	cfg := h.cfg
	go func() { h.done <- Run(ctx, cfg) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

// removeMountPoints removes what the shim created on the host, deepest first,
// using the file the cluster teardown uses.
func (h *harness) removeMountPoints() {
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, CreatedPathsFile))
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		_ = os.Remove(lines[i])
	}
}

func (h *harness) createPod(p *corev1.Pod) {
	h.t.Helper()
	p.Namespace = h.ns
	if !h.real {
		p.UID = types.UID(p.Name + "-uid")
	}
	p.Spec.NodeName = h.cfg.Node.Name
	if _, err := h.client.CoreV1().Pods(h.ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// waitPod polls the pod until ok holds. The bound only keeps a broken
// nodelet from hanging the test run; nothing asserts on timing.
func (h *harness) waitPod(name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		p, err := h.client.CoreV1().Pods(h.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		} else if !apierrors.IsNotFound(err) {
			h.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("pod %s never became %s; last status: %+v", name, what, last.Status)
	return nil
}

func (h *harness) waitGone(name string) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !h.podGone(name) {
		if time.Now().After(deadline) {
			h.t.Fatalf("pod %s never deleted", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) podGone(name string) bool {
	_, err := h.client.CoreV1().Pods(h.ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func podReady(p *corev1.Pod) bool {
	c := findCond(p.Status.Conditions, corev1.PodReady)
	return p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
}

func pids(t *testing.T, p *corev1.Pod) []int {
	var out []int
	for _, cs := range p.Status.ContainerStatuses {
		pid, err := strconv.Atoi(strings.TrimPrefix(cs.ContainerID, "nodelet://"))
		if err != nil {
			t.Fatalf("container ID %q", cs.ContainerID)
		}
		out = append(out, pid)
	}
	return out
}

func alive(pid int) bool { return unix.Kill(pid, 0) == nil }

func TestPodLifecycle(t *testing.T) {
	h := newHarness(t)
	out := filepath.Join(h.tmp, "mnt", "out")
	cfgDir := filepath.Join(h.tmp, "mnt", "cfg")
	tokDir := filepath.Join(h.tmp, "mnt", "istio-token")
	hostDir := filepath.Join(h.tmp, "mnt", "host")
	bpfDir := filepath.Join(h.tmp, "mnt", "bpf")
	if _, err := h.client.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hello", "other": "x"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	script := strings.Join([]string{
		`echo "$MSG" > ` + out + `/msg`,
		`cat ` + cfgDir + `/greeting > ` + out + `/cfg`,
		`cat ` + tokDir + `/istio-token > ` + out + `/token`,
		`cat ` + ServiceAccountMountPath + `/token ` + ServiceAccountMountPath + `/ca.crt ` + ServiceAccountMountPath + `/namespace > ` + out + `/sa`,
		`echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $HOSTNAME $AMBIENT_LOCALCLUSTER" > ` + out + `/env`,
		`echo node-file > ` + hostDir + `/f`,
		`echo pinned > ` + bpfDir + `/m`,
		`touch ` + cfgDir + `/new 2>/dev/null && echo rw > ` + out + `/cfgmode || echo ro > ` + out + `/cfgmode`,
		`echo ok > ` + out + `/ready`,
		`exec sleep 100000`,
	}, "; ")
	h.start()
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "sa1",
			Volumes: []corev1.Volume{
				{Name: "out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: &exp, Path: "istio-token"}},
				}}}},
				{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/ztunnel", Type: &dirOrCreate}}},
				{Name: "bpf", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys/fs/bpf/ambient", Type: &dirOrCreate}}},
			},
			Containers: []corev1.Container{
				{
					Name: "facts", Image: "ambient/shell:dev",
					Command: []string{"sh", "-c", script},
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "MSG", Value: "hi-$(POD_NAME)"},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "out", MountPath: out}, {Name: "cfg", MountPath: cfgDir}, {Name: "istio-token", MountPath: tokDir},
						{Name: "host", MountPath: hostDir}, {Name: "bpf", MountPath: bpfDir},
					},
					LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-d", out}}}, PeriodSeconds: 1},
				},
				{
					Name: "web", Image: "localhost/ambient/testbin@sha256:0123",
					Args:         []string{"http-server", "127.0.0.1:18080", out},
					Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 18080}},
					VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: out, ReadOnly: true}},
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
						PeriodSeconds: 1,
					},
				},
			},
		},
	})
	p := h.waitPod("web", "ready", podReady)
	if p.Status.PodIP != "127.0.0.1" || p.Status.HostIP != "127.0.0.1" || p.Status.StartTime == nil {
		t.Errorf("addresses: podIP %q hostIP %q startTime %v", p.Status.PodIP, p.Status.HostIP, p.Status.StartTime)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil || !cs.Ready || cs.RestartCount != 0 || cs.ContainerID == "" || cs.ImageID == "" {
			t.Errorf("container status %+v", cs)
		}
	}

	vol := filepath.Join(h.cfg.StateDir, "pods", "default_web_web-uid", "volumes", "out")
	for file, want := range map[string]string{
		"msg":     "hi-web\n",
		"cfg":     "hello",
		"token":   "token-for-default-web-aud=istio-ca",
		"sa":      "token-for-default-web-aud=FAKE CA\ndefault",
		"env":     "10.96.0.1:443 web nodelet-test\n",
		"cfgmode": "ro\n",
	} {
		got, err := os.ReadFile(filepath.Join(vol, file))
		if err != nil || string(got) != want {
			t.Errorf("container wrote %s = %q (%v), want %q", file, got, err, want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(h.cfg.Node.HostPathRoot, "var/run/ztunnel/f")); err != nil || string(got) != "node-file\n" {
		t.Errorf("hostPath file: %q %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(h.cfg.Node.BPFFSPath, "ambient/m")); err != nil || string(got) != "pinned\n" {
		t.Errorf("bpffs hostPath file: %q %v", got, err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("the host sees the container's volume at its mount path")
	}
	if b, err := os.ReadFile(filepath.Join(vol, "..", "..", "facts.log")); err != nil {
		t.Errorf("no log file: %v", err)
	} else if len(b) != 0 {
		t.Logf("facts.log: %s", b)
	}

	// ConfigMap changes reach the volume.
	cm, err := h.client.CoreV1().ConfigMaps("default").Get(context.Background(), "cfg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["greeting"] = "bonjour"
	if _, err := h.client.CoreV1().ConfigMaps("default").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmFile := filepath.Join(vol, "..", "cfg", "greeting")
	deadline := time.Now().Add(60 * time.Second)
	for b, _ := os.ReadFile(cmFile); string(b) != "bonjour"; b, _ = os.ReadFile(cmFile) {
		if time.Now().After(deadline) {
			t.Fatalf("configmap volume not refreshed: %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Deletion: the API server sets deletionTimestamp; the nodelet stops the
	// processes, tears the sandbox down and deletes the object.
	procs := pids(t, p)
	now := metav1.Now()
	grace := int64(5)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	if _, err := h.client.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitGone("web")
	for _, pid := range procs {
		if alive(pid) {
			t.Errorf("container process %d still running after delete", pid)
		}
	}
	if h.net.tornDown("web-uid") == 0 {
		t.Errorf("pod network not torn down")
	}
	if _, err := os.Stat(vol); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod volumes left behind: %v", err)
	}
}

func TestUnknownImage(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "docker.io/library/nginx:1.27"}}},
	})
	p := h.waitPod("nginx", "ErrImagePull", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "ErrImagePull"
	})
	w := p.Status.ContainerStatuses[0].State.Waiting
	if !strings.Contains(w.Message, `image "docker.io/library/nginx:1.27" has no local binary; known images: shell, testbin, unbuilt`) {
		t.Errorf("message %q", w.Message)
	}
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s", p.Status.Phase)
	}
	h.waitPod("nginx", "ImagePullBackOff", func(p *corev1.Pod) bool {
		return p.Status.ContainerStatuses[0].State.Waiting != nil && p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff"
	})
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "pods", "default_nginx_nginx-uid", "nginx.log")); err == nil {
		t.Errorf("a process was started for an unknown image")
	}

	// A known image whose binary was not built yet.
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unbuilt"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ambient/unbuilt:dev"}}},
	})
	p = h.waitPod("unbuilt", "ErrImagePull", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "ErrImagePull"
	})
	if m := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(m, "no-such-binary") || !strings.Contains(m, "build it first") {
		t.Errorf("message %q", m)
	}
}

func TestCrashLoop(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Containers:                   []corev1.Container{{Name: "crash", Image: "shell", Command: []string{"sh", "-c", "echo crashing; exit 3"}}},
		},
	})
	var sawBackoff bool
	p := h.waitPod("crash", "restarted twice after a crash loop back-off", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" && strings.Contains(w.Message, "restarting failed container=crash") &&
			cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 3 {
			sawBackoff = true
		}
		return sawBackoff && cs.RestartCount >= 2
	})
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s during a crash loop, want Running (as the kubelet reports it)", p.Status.Phase)
	}
	log, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "pods", "default_crash_crash-uid", "crash.log"))
	if err != nil || strings.Count(string(log), "crashing\n") < 2 {
		t.Errorf("log %q %v", log, err)
	}
}

func TestRestartPolicyNever(t *testing.T) {
	h := newHarness(t)
	h.start()
	sh := func(name, script string) corev1.Container {
		return corev1.Container{Name: name, Image: "shell", Command: []string{"sh", "-c", script},
			VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: filepath.Join(h.tmp, "work")}}}
	}
	spec := func(main string) corev1.PodSpec {
		return corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(bool),
			Volumes:                      []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			InitContainers:               []corev1.Container{sh("init", "echo done > "+filepath.Join(h.tmp, "work", "init"))},
			Containers:                   []corev1.Container{sh("main", main)},
		}
	}
	// The init container ran to completion before the main container.
	h.createPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ok"}, Spec: spec("test -f " + filepath.Join(h.tmp, "work", "init"))})
	h.createPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "fail"}, Spec: spec("exit 7")})
	p := h.waitPod("ok", "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if cs := p.Status.InitContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.Reason != "Completed" {
		t.Errorf("init status %+v", cs)
	}
	p = h.waitPod("fail", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if cs := p.Status.ContainerStatuses[0]; cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 7 || cs.RestartCount != 0 {
		t.Errorf("container status %+v", cs)
	}
}

func TestNodeHeartbeatAndStop(t *testing.T) {
	leakOpt := goleak.IgnoreCurrent()
	h := newHarness(t)
	// A pod force-deleted while no nodelet ran left its sandbox and files.
	orphan := filepath.Join(h.cfg.StateDir, "pods", "default_old_old-uid")
	if err := os.MkdirAll(filepath.Join(orphan, "volumes", "v"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Containers:                   []corev1.Container{{Name: "sleep", Image: "shell", Command: []string{"sleep", "100000"}}},
		},
	})
	p := h.waitPod("sleeper", "ready", podReady)
	node, err := h.client.CoreV1().Nodes().Get(context.Background(), "node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ready bool
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready || len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != "127.0.0.1" {
		t.Errorf("node status %+v", node.Status)
	}
	if _, err := h.client.CoordinationV1().Leases(NodeLeaseNamespace).Get(context.Background(), "node1", metav1.GetOptions{}); err != nil {
		t.Errorf("node lease: %v", err)
	}
	// Files go first, then the sandbox: wait for the teardown.
	for deadline := time.Now().Add(60 * time.Second); h.net.tornDown("old-uid") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("orphan pod sandbox not torn down")
		}
	}
	if _, err := os.Stat(filepath.Join(orphan, "volumes")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan pod volumes left: %v", err)
	}
	// Stopping the daemon stops the containers but leaves the pod.
	procs := pids(t, p)
	h.stop()
	for _, pid := range procs {
		if alive(pid) {
			t.Errorf("container process %d survived the nodelet", pid)
		}
	}
	if h.podGone("sleeper") {
		t.Fatalf("pod deleted on daemon stop")
	}
	goleak.VerifyNone(t, leakOpt)

	// A new daemon starts the pods already bound to its node again.
	h.start()
	h.waitPod("sleeper", "running again", func(p *corev1.Pod) bool {
		ids := pids(t, p)
		return podReady(p) && len(ids) == 1 && ids[0] != procs[0] && alive(ids[0])
	})

	// A pod that vanishes from the API (no graceful deletion) is cleaned up too.
	p, err = h.client.CoreV1().Pods("default").Get(context.Background(), "sleeper", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	procs = pids(t, p)
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "sleeper", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for h.net.tornDown("sleeper-uid") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("vanished pod never cleaned up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if alive(procs[0]) {
		t.Errorf("container process %d of a vanished pod still running", procs[0])
	}
}

func TestProbes(t *testing.T) {
	h := newHarness(t)
	h.start()
	grace := int64(1)
	tcp := func(port int) corev1.ProbeHandler {
		return corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}
	}
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probed"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{
				{
					Name: "live", Image: "shell", Command: []string{"sleep", "100000"},
					LivenessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/nonexistent-nodelet-file"}}},
						PeriodSeconds: 1, FailureThreshold: 1,
					},
				},
				{
					Name: "web", Image: "testbin", Args: []string{"http-server", "127.0.0.1:18081", "/"},
					StartupProbe:   &corev1.Probe{ProbeHandler: tcp(18081), PeriodSeconds: 1, FailureThreshold: 30},
					ReadinessProbe: &corev1.Probe{ProbeHandler: tcp(18081), PeriodSeconds: 1},
				},
				{
					Name: "unready", Image: "shell", Command: []string{"sleep", "100000"},
					ReadinessProbe: &corev1.Probe{ProbeHandler: tcp(18099), PeriodSeconds: 1},
				},
			},
		},
	})
	p := h.waitPod("probed", "restarted by its liveness probe, web ready", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 3 {
			return false
		}
		live, web := p.Status.ContainerStatuses[0], p.Status.ContainerStatuses[1]
		return live.RestartCount >= 1 && live.LastTerminationState.Terminated != nil && web.Ready
	})
	live, web, unready := p.Status.ContainerStatuses[0], p.Status.ContainerStatuses[1], p.Status.ContainerStatuses[2]
	if term := live.LastTerminationState.Terminated; term.ExitCode != 128+15 || term.Reason != "Error" {
		t.Errorf("liveness kill: %+v, want exit code 143 (SIGTERM)", term)
	}
	if web.Started == nil || !*web.Started || web.RestartCount != 0 {
		t.Errorf("web %+v", web)
	}
	if unready.Ready || unready.State.Running == nil {
		t.Errorf("unready container %+v: want running and not ready", unready)
	}
	if c := findCond(p.Status.Conditions, corev1.PodReady); c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "unready") {
		t.Errorf("pod Ready condition %+v", c)
	}
}

func TestHostNetworkPod(t *testing.T) {
	h := newHarness(t)
	nodeNetns, nodeIno := shimtest.NewNetns(t)
	h.cfg.Node.NetnsPath = nodeNetns
	h.cfg.Node.IP = netip.MustParseAddr("127.0.0.2")
	h.start()
	out := filepath.Join(h.tmp, "mnt", "out")
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hostnet"},
		Spec: corev1.PodSpec{
			HostNetwork:                  true,
			AutomountServiceAccountToken: new(bool),
			Volumes:                      []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{
				Name: "c", Image: "shell",
				Command:      []string{"sh", "-c", "readlink /proc/self/ns/net > " + out + "/ns; echo $HOSTNAME $POD_IP > " + out + "/env; exec sleep 100000"},
				Env:          []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: out}},
			}},
		},
	})
	p := h.waitPod("hostnet", "ready", podReady)
	if p.Status.PodIP != "127.0.0.2" || p.Status.HostIP != "127.0.0.2" {
		t.Errorf("podIP %q hostIP %q, want the node IP", p.Status.PodIP, p.Status.HostIP)
	}
	vol := filepath.Join(h.cfg.StateDir, "pods", "default_hostnet_hostnet-uid", "volumes", "out")
	h.waitFile(filepath.Join(vol, "env"))
	for file, want := range map[string]string{"ns": fmt.Sprintf("net:[%d]\n", nodeIno), "env": "node1 127.0.0.2\n"} {
		if got, err := os.ReadFile(filepath.Join(vol, file)); err != nil || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", file, got, err, want)
		}
	}
	if n := len(h.net.setups); n != 0 {
		t.Errorf("SetupPod called %d times for a hostNetwork pod", n)
	}
}

func TestTokenRefresh(t *testing.T) {
	h := newHarness(t)
	h.tokenTTL = 2 * time.Second
	h.start()
	exp := int64(600)
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "tok"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: new(bool),
			Volumes: []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: &exp, Path: "token"}},
			}}}}},
			Containers: []corev1.Container{{Name: "c", Image: "shell", Command: []string{"sleep", "100000"},
				VolumeMounts: []corev1.VolumeMount{{Name: "t", MountPath: filepath.Join(h.tmp, "mnt", "t")}}}},
		},
	})
	h.waitPod("tok", "ready", podReady)
	file := filepath.Join(h.cfg.StateDir, "pods", "default_tok_tok-uid", "volumes", "t", "token")
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if strings.HasSuffix(string(b), "#3") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token never refreshed twice: %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *harness) waitFile(path string) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never written", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNativeSidecar(t *testing.T) {
	h := newHarness(t)
	h.start()
	work := filepath.Join(h.tmp, "work")
	always := corev1.ContainerRestartPolicyAlways
	mount := []corev1.VolumeMount{{Name: "work", MountPath: work}}
	h.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sidecar"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(bool),
			Volumes:                      []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			InitContainers: []corev1.Container{{
				Name: "side", Image: "shell", RestartPolicy: &always, VolumeMounts: mount,
				Command: []string{"sh", "-c", "echo up > " + work + "/side; exec sleep 100000"},
				StartupProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", work + "/side"}}},
					PeriodSeconds: 1, FailureThreshold: 30,
				},
			}},
			// Runs only once the sidecar has started, so the file is there.
			Containers: []corev1.Container{{Name: "app", Image: "shell", VolumeMounts: mount, Command: []string{"test", "-f", work + "/side"}}},
		},
	})
	p := h.waitPod("sidecar", "Succeeded with its sidecar stopped", func(p *corev1.Pod) bool {
		cs := p.Status.InitContainerStatuses
		return p.Status.Phase == corev1.PodSucceeded && len(cs) == 1 && cs[0].State.Terminated != nil
	})
	if cs := p.Status.ContainerStatuses[0]; cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
		t.Errorf("app %+v", cs)
	}
}
