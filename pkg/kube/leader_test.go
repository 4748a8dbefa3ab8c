package kube

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// failsafe bounds waits on events that must happen; it is a hang guard, not
// a latency assertion.
const failsafe = 30 * time.Second

func testConfig(id string) ElectionConfig {
	return ElectionConfig{
		Name: "istiod-lite-leader", Namespace: "istio-system", Identity: id,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 50 * time.Millisecond,
	}
}

type candidate struct {
	id      string
	el      *LeaderElector
	cancel  context.CancelFunc
	done    chan struct{}
	started chan string // task start, carries id
	stopped chan string // OnStoppedLeading, carries id
	taskEnd chan string // task observed its context end
}

func startCandidate(t *testing.T, client *fake.Clientset, id string, started, stopped, taskEnd chan string) *candidate {
	t.Helper()
	el, err := NewLeaderElector(client, testConfig(id), zaptest.NewLogger(t).Named(id))
	if err != nil {
		t.Fatal(err)
	}
	c := &candidate{id: id, el: el, done: make(chan struct{}), started: started, stopped: stopped, taskEnd: taskEnd}
	el.OnStartedLeading("probe", func(ctx context.Context) error {
		if !el.IsLeader() {
			t.Errorf("%s: task runs but IsLeader() is false", id)
		}
		started <- id
		<-ctx.Done()
		taskEnd <- id
		return nil
	})
	el.OnStoppedLeading(func() { stopped <- id })
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		if err := el.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	return c
}

func recv(t *testing.T, ch chan string, what string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatalf("no %s", what)
		return ""
	}
}

func TestLeaderElectionFailover(t *testing.T) {
	client := fake.NewClientset()
	started, stopped, taskEnd := make(chan string, 4), make(chan string, 4), make(chan string, 4)
	a := startCandidate(t, client, "istiod-a", started, stopped, taskEnd)
	b := startCandidate(t, client, "istiod-b", started, stopped, taskEnd)
	byID := map[string]*candidate{a.id: a, b.id: b}

	first := byID[recv(t, started, "first leader")]
	second := a
	if first == a {
		second = b
	}
	if !first.el.IsLeader() {
		t.Errorf("%s leads but IsLeader() is false", first.id)
	}
	if second.el.IsLeader() {
		t.Errorf("both %s and %s claim to lead", first.id, second.id)
	}
	lease, err := client.CoordinationV1().Leases("istio-system").Get(context.Background(), "istiod-lite-leader", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("lease not written: %v", err)
	}
	if got := *lease.Spec.HolderIdentity; got != first.id {
		t.Errorf("lease holder %q, want %q", got, first.id)
	}

	// The leader shuts down: its task ends, then OnStoppedLeading runs, and
	// the other replica takes over (the lease is released on cancel).
	first.cancel()
	if got := recv(t, taskEnd, "task end"); got != first.id {
		t.Errorf("task end from %s, want %s", got, first.id)
	}
	if got := recv(t, stopped, "OnStoppedLeading"); got != first.id {
		t.Errorf("OnStoppedLeading from %s, want %s", got, first.id)
	}
	<-first.done
	if first.el.IsLeader() {
		t.Errorf("%s still claims to lead after Run returned", first.id)
	}
	if got := recv(t, started, "takeover"); got != second.id {
		t.Errorf("takeover by %s, want %s", got, second.id)
	}

	second.cancel()
	recv(t, taskEnd, "second task end")
	recv(t, stopped, "second OnStoppedLeading")
	<-second.done
	if len(started)+len(stopped)+len(taskEnd) != 0 {
		t.Errorf("unexpected extra callbacks: started=%d stopped=%d taskEnd=%d", len(started), len(stopped), len(taskEnd))
	}
}

func TestNewLeaderElectorValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  ElectionConfig
		ok   bool
	}{
		{"complete", ElectionConfig{Name: "l", Namespace: "ns", Identity: "pod"}, true},
		{"no name", ElectionConfig{Namespace: "ns", Identity: "pod"}, false},
		{"no namespace", ElectionConfig{Name: "l", Identity: "pod"}, false},
		{"no identity", ElectionConfig{Name: "l", Namespace: "ns"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLeaderElector(fake.NewClientset(), tt.cfg, zaptest.NewLogger(t))
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// A replica that never wins leads no task and calls no OnStoppedLeading.
func TestNoTermNoCallbacks(t *testing.T) {
	client := fake.NewClientset()
	hold, err := NewLeaderElector(client, testConfig("holder"), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	leading := make(chan struct{})
	hold.OnStartedLeading("hold", func(ctx context.Context) error { close(leading); <-ctx.Done(); return nil })
	hctx, hcancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); _ = hold.Run(hctx) }()
	select {
	case <-leading:
	case <-time.After(failsafe):
		t.Fatal("holder never led")
	}

	other, err := NewLeaderElector(client, testConfig("other"), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	other.OnStartedLeading("never", func(ctx context.Context) error { calls++; return nil })
	other.OnStoppedLeading(func() { calls++ })
	octx, ocancel := context.WithCancel(context.Background())
	ocancel() // Run with an ended context returns without leading
	if err := other.Run(octx); err != nil {
		t.Fatal(err)
	}
	if calls != 0 || other.IsLeader() {
		t.Errorf("non-leader ran %d callbacks, IsLeader=%v", calls, other.IsLeader())
	}
	hcancel()
	wg.Wait()
}

func TestDefaultIdentity(t *testing.T) {
	t.Setenv("POD_NAME", "istiod-lite-7d9f-abcde")
	if got := DefaultIdentity(); got != "istiod-lite-7d9f-abcde" {
		t.Errorf("DefaultIdentity() = %q, want the pod name", got)
	}
	t.Setenv("POD_NAME", "")
	if got := DefaultIdentity(); got == "" {
		t.Error("DefaultIdentity() is empty without POD_NAME; want the host name")
	}
}
