package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Default election timings (client-go's usual values): a crashed leader is
// replaced within LeaseDuration; a leader that cannot renew for
// RenewDeadline steps down.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ElectionConfig names the Lease and the candidate.
type ElectionConfig struct {
	// Name and Namespace of the coordination.k8s.io Lease, e.g.
	// istiod-lite-leader in istio-system.
	Name      string
	Namespace string
	// Identity is this replica's unique name, normally its pod name.
	Identity string
	// Timings; zero means the Default* value.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultIdentity is the candidate name: $POD_NAME (set from the downward
// API), else the host name.
func DefaultIdentity() string {
	if v := os.Getenv("POD_NAME"); v != "" {
		return v
	}
	h, _ := os.Hostname()
	return h
}

func (c ElectionConfig) withDefaults() ElectionConfig {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	return c
}

func (c ElectionConfig) validate() error {
	switch {
	case c.Name == "":
		return errors.New("lease name is empty")
	case c.Namespace == "":
		return errors.New("lease namespace is empty")
	case c.Identity == "":
		return errors.New("identity is empty (set POD_NAME)")
	}
	return nil
}

type task struct {
	name string
	fn   func(ctx context.Context) error
}

// LeaderElector runs registered tasks only while this replica holds the
// Lease. Every term (from acquiring the Lease to losing it) starts each task
// in its own goroutine with a context that is cancelled when the term ends;
// when all of them have returned, the OnStoppedLeading functions run, and
// the replica stands for election again until Run's context ends. The Lease
// is released on shutdown so another replica takes over at once.
//
// Losing the Lease and stopping the tasks are not atomic: for a moment after
// a term ends the old leader's tasks may still be finishing a write. The
// writers are level-based and use resourceVersion preconditions, so the
// next leader's reconcile converges.
type LeaderElector struct {
	client kubernetes.Interface
	cfg    ElectionConfig
	log    *zap.Logger

	mu      sync.Mutex
	tasks   []task
	stopped []func()

	leader atomic.Bool
}

// NewLeaderElector validates cfg; call Run to take part in the election.
func NewLeaderElector(client kubernetes.Interface, cfg ElectionConfig, log *zap.Logger) (*LeaderElector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("leader election %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	return &LeaderElector{
		client: client,
		cfg:    cfg,
		log:    log.With(zap.String("lease", cfg.Namespace+"/"+cfg.Name), zap.String("identity", cfg.Identity)),
	}, nil
}

// OnStartedLeading registers a task to run during every term. fn must
// return when its context is cancelled; an error it returns while the term
// lasts is logged (the term goes on: the other tasks keep running).
// Tasks registered during a term start with the next one.
func (e *LeaderElector) OnStartedLeading(name string, fn func(ctx context.Context) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tasks = append(e.tasks, task{name: name, fn: fn})
}

// OnStoppedLeading registers fn to run at the end of every term of this
// replica, after all tasks have returned.
func (e *LeaderElector) OnStoppedLeading(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = append(e.stopped, fn)
}

// IsLeader reports whether this replica currently leads.
func (e *LeaderElector) IsLeader() bool { return e.leader.Load() }

// Run takes part in the election until ctx ends, then returns nil once the
// tasks of the last term have returned.
func (e *LeaderElector) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := e.runTerm(ctx); err != nil {
			return err
		}
	}
	return nil
}

// term tracks one call of client-go's LeaderElector.Run. client-go starts
// OnStartedLeading in a goroutine it does not wait for; closed (set by
// OnStoppedLeading, which always runs when that Run returns) makes sure a
// late goroutine starts nothing, so wg.Wait covers every task started.
type term struct {
	mu     sync.Mutex
	closed bool
	led    bool
	wg     sync.WaitGroup
}

func (e *LeaderElector) runTerm(ctx context.Context) error {
	t := &term{}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: e.cfg.Name, Namespace: e.cfg.Namespace},
			Client:     e.client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
		},
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { e.lead(ctx, t) },
			OnStoppedLeading: func() {
				t.mu.Lock()
				t.closed = true
				e.leader.Store(false)
				t.mu.Unlock()
			},
			OnNewLeader: func(identity string) {
				e.log.Info("leader observed", zap.String("leader", identity))
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
	}
	le.Run(ctx)
	t.wg.Wait()
	t.mu.Lock()
	led := t.led
	t.mu.Unlock()
	if led {
		e.log.Info("stopped leading")
		e.mu.Lock()
		stopped := append([]func(){}, e.stopped...)
		e.mu.Unlock()
		for _, fn := range stopped {
			fn()
		}
	}
	return nil
}

func (e *LeaderElector) lead(ctx context.Context, t *term) {
	e.mu.Lock()
	tasks := append([]task{}, e.tasks...)
	e.mu.Unlock()

	t.mu.Lock()
	if t.closed || ctx.Err() != nil {
		t.mu.Unlock()
		return
	}
	t.led = true
	t.wg.Add(len(tasks))
	e.leader.Store(true)
	t.mu.Unlock()

	e.log.Info("started leading", zap.Int("tasks", len(tasks)))
	for _, tk := range tasks {
		go func() {
			defer t.wg.Done()
			if err := tk.fn(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("leader task failed", zap.String("task", tk.name), zap.Error(err))
			}
		}()
	}
}
