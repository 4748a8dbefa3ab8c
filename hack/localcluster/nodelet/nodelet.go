package nodelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Run serves one node until ctx ends, then stops all its containers (the
// daemon is stopping; pods, sandboxes and files are left for the next run
// or the cluster teardown) and returns.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "pods"), 0o755); err != nil {
		return fmt.Errorf("nodelet state dir: %w", err)
	}
	n := &nodelet{cfg: &cfg, ctx: ctx, workers: map[types.UID]*worker{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + cfg.Node.Name
		}))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    n.onPod,
		UpdateFunc: func(_, obj any) { n.onPod(obj) },
		DeleteFunc: n.onDelete,
	}); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	var hb sync.WaitGroup
	hb.Go(func() { heartbeat(ctx, &cfg) })
	factory.Start(ctx.Done())
	cfg.Logger.Info("nodelet started")
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		n.cleanupOrphans(ctx, inf.GetStore())
	}
	<-ctx.Done()
	factory.Shutdown()
	hb.Wait()
	n.wg.Wait()
	cfg.Logger.Info("nodelet stopped")
	return nil
}

type nodelet struct {
	cfg     *Config
	ctx     context.Context
	mu      sync.Mutex
	workers map[types.UID]*worker
	wg      sync.WaitGroup
}

func (n *nodelet) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != n.cfg.Node.Name {
		return
	}
	n.mu.Lock()
	w, ok := n.workers[pod.UID]
	if !ok {
		if n.ctx.Err() != nil {
			n.mu.Unlock()
			return
		}
		w = newWorker(n.cfg, pod)
		n.workers[pod.UID] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			w.run(n.ctx)
			n.mu.Lock()
			delete(n.workers, pod.UID)
			n.mu.Unlock()
		}()
	}
	n.mu.Unlock()
	w.setPod(pod, false)
}

func (n *nodelet) onDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	w := n.workers[pod.UID]
	n.mu.Unlock()
	if w != nil {
		w.setPod(nil, true)
	}
}

// cleanupOrphans tears down sandboxes and files of pods that left the API
// while no nodelet was running (force-deleted pods). Logs are kept.
func (n *nodelet) cleanupOrphans(ctx context.Context, store cache.Store) {
	root := filepath.Join(n.cfg.StateDir, "pods")
	ents, err := os.ReadDir(root)
	if err != nil {
		n.cfg.Logger.Warn("scan pod dirs failed", zap.Error(err))
		return
	}
	live := map[string]bool{}
	for _, obj := range store.List() {
		if p, ok := obj.(*corev1.Pod); ok {
			live[string(p.UID)] = true
		}
	}
	for _, e := range ents {
		uid := uidFromPodDir(e.Name())
		if uid == "" || live[uid] {
			continue
		}
		if err := removeAll(filepath.Join(root, e.Name(), "volumes")); err != nil {
			n.cfg.Logger.Warn("orphan pod volume removal failed", zap.String("uid", uid), zap.Error(err))
		}
		if err := n.cfg.Net.TeardownPod(ctx, uid); err != nil {
			n.cfg.Logger.Warn("orphan pod network teardown failed", zap.String("uid", uid), zap.Error(err))
		}
		n.cfg.Logger.Info("orphan pod cleaned up", zap.String("dir", e.Name()))
	}
}

// uidFromPodDir extracts the pod UID from a pod directory name
// (<namespace>_<name>_<uid>; names never contain '_'), or "" if it is not one.
func uidFromPodDir(dir string) string {
	parts := strings.Split(dir, "_")
	if len(parts) != 3 || parts[2] == "" {
		return ""
	}
	return parts[2]
}
