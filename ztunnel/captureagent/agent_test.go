package captureagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	testNode   = "node1"
	testUplink = 2
)

// fakeDatapath is an in-memory Datapath.
type fakeDatapath struct {
	mu         sync.Mutex
	attached   map[int]bool
	enrolled   map[netip.Addr]int
	failEnroll int // fail this many Enroll calls
}

func newFakeDatapath() *fakeDatapath {
	return &fakeDatapath{attached: map[int]bool{}, enrolled: map[netip.Addr]int{}}
}

func (f *fakeDatapath) Attach(ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached[ifindex] = true
	return nil
}

func (f *fakeDatapath) Detach(ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, ifindex)
	return nil
}

func (f *fakeDatapath) Enroll(ifindex int, ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failEnroll > 0 {
		f.failEnroll--
		return errors.New("injected enroll failure")
	}
	f.enrolled[ip] = ifindex
	return nil
}

func (f *fakeDatapath) Unenroll(ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.enrolled, ip)
	return nil
}

func (f *fakeDatapath) Enrolled() (map[netip.Addr]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.enrolled), nil
}

func (f *fakeDatapath) Attached() ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.attached)), nil
}

// is reports whether the fake holds exactly these attachments and enrollments.
func (f *fakeDatapath) is(attached []int, enrolled map[netip.Addr]int) bool {
	got, _ := f.Attached()
	en, _ := f.Enrolled()
	slices.Sort(attached)
	return slices.Equal(got, attached) && maps.Equal(en, enrolled)
}

func (f *fakeDatapath) String() string {
	got, _ := f.Attached()
	en, _ := f.Enrolled()
	return fmt.Sprintf("attached %v enrolled %v", got, en)
}

// fakeVeths resolves pod addresses from a map.
type fakeVeths struct {
	mu sync.Mutex
	m  map[netip.Addr]int
}

func (v *fakeVeths) HostVeth(ip netip.Addr) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if i, ok := v.m[ip]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("route to %s: %w", ip, ErrNoVeth)
}

func (v *fakeVeths) set(ip netip.Addr, ifindex int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[ip] = ifindex
}

type fixedUplink int

func (u fixedUplink) Uplink() (int, error) { return int(u), nil }

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func pod(ns, name, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

type harness struct {
	client *fake.Clientset
	dp     *fakeDatapath
	veths  *fakeVeths
	agent  *Agent
	reg    *prometheus.Registry
}

// start runs an agent over a fake clientset holding objs until the test ends.
func start(t *testing.T, resync time.Duration, dp *fakeDatapath, veths map[netip.Addr]int, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{
		client: fake.NewClientset(objs...),
		dp:     dp,
		veths:  &fakeVeths{m: veths},
		reg:    prometheus.NewPedanticRegistry(),
	}
	var err error
	h.agent, err = New(Options{
		Client: clientsetKube{h.client}, NodeName: testNode, Datapath: h.dp, Veths: h.veths, Uplink: fixedUplink(testUplink),
		Resync: resync, Logger: zaptest.NewLogger(t), Registry: h.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// waitFor polls cond; the timeout only bounds a failing test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitState(t *testing.T, what string, attached []int, enrolled map[netip.Addr]int) {
	t.Helper()
	waitFor(t, what, func() bool { return h.dp.is(attached, enrolled) })
}

func (h *harness) labelNamespace(t *testing.T, name string, value string) {
	t.Helper()
	ctx := context.Background()
	ns, err := h.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setLabel(&ns.ObjectMeta, value)
	if _, err := h.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) labelPod(t *testing.T, ns, name string, value string) {
	t.Helper()
	ctx := context.Background()
	p, err := h.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setLabel(&p.ObjectMeta, value)
	if _, err := h.client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setLabel sets the dataplane-mode label, or removes it for "".
func setLabel(m *metav1.ObjectMeta, value string) {
	if value == "" {
		delete(m.Labels, DataplaneModeLabel)
		return
	}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[DataplaneModeLabel] = value
}

var (
	podA = netip.MustParseAddr("10.0.0.2")
	podB = netip.MustParseAddr("10.0.0.3")
	podC = netip.MustParseAddr("10.0.0.4")
)

// TestAgentEnrollment walks a node through live enrollment changes: every pod
// veth is attached whatever its enrollment; labels enroll and unenroll without
// pod restarts; a deleted pod is unenrolled and detached; stopping the agent
// leaves the datapath in place.
func TestAgentEnrollment(t *testing.T) {
	dp := newFakeDatapath()
	h := start(t, time.Hour, dp, map[netip.Addr]int{podA: 10, podB: 11, podC: 12},
		namespace("app", nil),
		namespace("istio-system", nil),
		pod("app", "a", testNode, podA.String(), nil),
		pod("app", "b", testNode, podB.String(), nil),
		pod("app", "elsewhere", "node2", "10.9.0.2", nil), // another node's pod
		func() *corev1.Pod {
			p := pod("istio-system", "ztunnel", testNode, "192.168.0.10", nil)
			p.Spec.HostNetwork = true
			return p
		}(),
	)
	h.waitState(t, "pod veths and uplink attached, nothing enrolled", []int{testUplink, 10, 11}, map[netip.Addr]int{})

	h.labelNamespace(t, "app", DataplaneModeAmbient)
	h.waitState(t, "namespace label to enroll both pods", []int{testUplink, 10, 11}, map[netip.Addr]int{podA: 10, podB: 11})
	waitFor(t, "status to list both pods", func() bool { return len(h.agent.Status().Pods) == 2 })
	st := h.agent.Status()
	wantPods := []CapturedPod{{"app", "a", podA, 10}, {"app", "b", podB, 11}}
	if !slices.Equal(st.Pods, wantPods) || st.Uplink != testUplink || !slices.Equal(st.Attached, []int{testUplink, 10, 11}) {
		t.Errorf("Status = %+v, want pods %v, uplink %d, attached [2 10 11]", st, wantPods, testUplink)
	}
	if got := testutil.ToFloat64(h.agent.metrics.enrolledPods); got != 2 {
		t.Errorf("%s = %v, want 2", MetricEnrolledPods, got)
	}
	if got := testutil.ToFloat64(h.agent.metrics.attached); got != 3 {
		t.Errorf("%s = %v, want 3", MetricAttachedInterfaces, got)
	}

	h.labelPod(t, "app", "b", DataplaneModeNone)
	h.waitState(t, "pod b to opt out (veth kept)", []int{testUplink, 10, 11}, map[netip.Addr]int{podA: 10})

	h.labelNamespace(t, "app", "")
	h.waitState(t, "namespace unlabel to unenroll pod a", []int{testUplink, 10, 11}, map[netip.Addr]int{})

	h.labelPod(t, "app", "a", DataplaneModeAmbient)
	h.waitState(t, "pod label to enroll pod a alone", []int{testUplink, 10, 11}, map[netip.Addr]int{podA: 10})

	if _, err := h.client.CoreV1().Pods("app").Create(context.Background(), pod("app", "c", testNode, podC.String(), nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitState(t, "new pod c's veth attached", []int{testUplink, 10, 11, 12}, map[netip.Addr]int{podA: 10})

	if err := h.client.CoreV1().Pods("app").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitState(t, "deleted pod a to be unenrolled and detached", []int{testUplink, 11, 12}, map[netip.Addr]int{})
}

// TestAgentLeavesCaptureOnStop: stopping the agent keeps capture in place.
func TestAgentLeavesCaptureOnStop(t *testing.T) {
	dp := newFakeDatapath()
	t.Run("run", func(t *testing.T) {
		h := start(t, time.Hour, dp, map[netip.Addr]int{podA: 10},
			namespace("app", map[string]string{DataplaneModeLabel: DataplaneModeAmbient}),
			pod("app", "a", testNode, podA.String(), nil))
		h.waitState(t, "pod a enrolled", []int{testUplink, 10}, map[netip.Addr]int{podA: 10})
	}) // the agent stops here
	if !dp.is([]int{testUplink, 10}, map[netip.Addr]int{podA: 10}) {
		t.Errorf("after stop: %v, want capture left in place", dp)
	}
}

// TestAgentResyncRepairsDrift: state changed behind the agent's back (an
// enrollment deleted, a link detached, a stray entry) is repaired by the
// periodic resync, without any Kubernetes event.
func TestAgentResyncRepairsDrift(t *testing.T) {
	dp := newFakeDatapath()
	h := start(t, 20*time.Millisecond, dp, map[netip.Addr]int{podA: 10},
		namespace("app", map[string]string{DataplaneModeLabel: DataplaneModeAmbient}),
		pod("app", "a", testNode, podA.String(), nil))
	want := map[netip.Addr]int{podA: 10}
	h.waitState(t, "pod a enrolled", []int{testUplink, 10}, want)

	dp.Unenroll(podA)
	dp.Detach(testUplink)
	dp.Enroll(10, podC) // an address no pod of this node has
	h.waitState(t, "resync to repair the drift", []int{testUplink, 10}, want)
}

// TestAgentRetriesFailures: a failed reconcile is counted and retried with
// backoff (no resync within the test), and a pod whose veth cannot be resolved
// yet is enrolled once it can.
func TestAgentRetriesFailures(t *testing.T) {
	dp := newFakeDatapath()
	dp.failEnroll = 2
	h := start(t, time.Hour, dp, map[netip.Addr]int{podA: 10},
		namespace("app", map[string]string{DataplaneModeLabel: DataplaneModeAmbient}),
		pod("app", "a", testNode, podA.String(), nil),
		pod("app", "c", testNode, podC.String(), nil)) // no veth yet
	h.waitState(t, "pod a enrolled after enroll failures", []int{testUplink, 10}, map[netip.Addr]int{podA: 10})
	if got := testutil.ToFloat64(h.agent.metrics.reconcileErrors); got < 2 {
		t.Errorf("%s = %v, want >= 2", MetricReconcileErrors, got)
	}
	if st := h.agent.Status(); st.LastError == "" {
		t.Errorf("Status.LastError is empty while pod c is unresolved")
	}
	h.veths.set(podC, 12)
	h.waitState(t, "pod c enrolled once its veth resolves", []int{testUplink, 10, 12}, map[netip.Addr]int{podA: 10, podC: 12})
	waitFor(t, "status error to clear", func() bool { return h.agent.Status().LastError == "" })
}

// TestAgentRejectsUplinkAsVeth: a pod address routed out of the uplink (its
// /32 route is gone) is not taken for the pod's veth.
func TestAgentRejectsUplinkAsVeth(t *testing.T) {
	h := start(t, time.Hour, newFakeDatapath(), map[netip.Addr]int{podA: 10, podC: testUplink},
		namespace("app", map[string]string{DataplaneModeLabel: DataplaneModeAmbient}),
		pod("app", "a", testNode, podA.String(), nil),
		pod("app", "c", testNode, podC.String(), nil))
	h.waitState(t, "pod a enrolled, pod c not", []int{testUplink, 10}, map[netip.Addr]int{podA: 10})
	if st := h.agent.Status(); !strings.Contains(st.LastError, "leaves by the uplink") {
		t.Errorf("Status.LastError = %q, want the uplink rejection", st.LastError)
	}
}

// TestAgentMetricsRegistered: the metrics are on the registry passed in.
func TestAgentMetricsRegistered(t *testing.T) {
	h := start(t, time.Hour, newFakeDatapath(), map[netip.Addr]int{})
	n, err := testutil.GatherAndCount(h.reg, MetricEnrolledPods, MetricAttachedInterfaces, MetricReconcileErrors)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("registered metrics = %d, want 3", n)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Options{Client: clientsetKube{fake.NewClientset()}, NodeName: "n", Datapath: newFakeDatapath(), Veths: &fakeVeths{}, Uplink: fixedUplink(1)}
	for name, mutate := range map[string]func(*Options){
		"no client":   func(o *Options) { o.Client = nil },
		"no node":     func(o *Options) { o.NodeName = "" },
		"no datapath": func(o *Options) { o.Datapath = nil },
		"no veths":    func(o *Options) { o.Veths = nil },
		"no uplink":   func(o *Options) { o.Uplink = nil },
	} {
		o := ok
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New: %v", err)
	}
}
