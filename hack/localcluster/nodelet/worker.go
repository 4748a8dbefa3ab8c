package nodelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// worker runs one pod. Its run goroutine owns every field below "owned by
// run"; other goroutines talk to it through setPod/kick and events.
type worker struct {
	cfg *Config
	log *zap.Logger
	uid types.UID
	dir string // StateDir/pods/<ns>_<name>_<uid>

	mu     sync.Mutex
	latest *corev1.Pod
	gone   bool

	kickCh chan struct{}
	events chan event
	bg     sync.WaitGroup // process waiters, probes, token refreshers

	// owned by run
	podCtx    context.Context
	cancelPod context.CancelFunc
	net       *PodNet
	vols      *volumes
	startTime time.Time
	init      []*ctr
	ctrs      []*ctr
	wake      time.Time
	ranAny    bool
}

type eventKind int

const (
	evExited eventKind = iota
	evReady
	evNotReady
	evStarted
	evUnhealthy
)

type event struct {
	c        *ctr
	instance int
	kind     eventKind
	term     *Terminated
	msg      string
}

func newWorker(cfg *Config, pod *corev1.Pod) *worker {
	w := &worker{
		cfg:    cfg,
		log:    cfg.Logger.With(zap.String("pod", pod.Namespace+"/"+pod.Name), zap.String("uid", string(pod.UID))),
		uid:    pod.UID,
		dir:    filepath.Join(cfg.StateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		latest: pod,
		kickCh: make(chan struct{}, 1),
		events: make(chan event, 16),
	}
	for _, c := range pod.Spec.InitContainers {
		w.init = append(w.init, &ctr{spec: c, isInit: true, st: ContainerState{Name: c.Name, Image: c.Image}})
	}
	for _, c := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, &ctr{spec: c, st: ContainerState{Name: c.Name, Image: c.Image}})
	}
	return w
}

// setPod records the newest pod object (gone: deleted from the API) and
// wakes the worker.
func (w *worker) setPod(pod *corev1.Pod, gone bool) {
	w.mu.Lock()
	if pod != nil {
		w.latest = pod
	}
	w.gone = w.gone || gone
	w.mu.Unlock()
	w.kick()
}

func (w *worker) kick() {
	select {
	case w.kickCh <- struct{}{}:
	default:
	}
}

func (w *worker) current() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest, w.gone
}

// run drives the pod until it is deleted or ctx ends.
func (w *worker) run(ctx context.Context) {
	w.podCtx, w.cancelPod = context.WithCancel(ctx)
	defer w.bg.Wait()
	defer w.cancelPod()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			w.terminate(w.cfg.StopGracePeriod)
			w.log.Info("pod containers stopped")
			return
		}
		w.wake = time.Time{}
		if w.sync(ctx) {
			return
		}
		var wakeC <-chan time.Time
		if !w.wake.IsZero() {
			timer.Reset(max(time.Until(w.wake), time.Millisecond))
			wakeC = timer.C
		}
		select {
		case <-ctx.Done():
		case <-w.kickCh:
		case ev := <-w.events:
			w.handle(ev)
		case <-wakeC:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (w *worker) wakeAt(t time.Time) {
	if w.wake.IsZero() || t.Before(w.wake) {
		w.wake = t
	}
}

// sync moves the pod one step towards its spec; it reports true when the
// worker is done (pod deleted and cleaned up).
func (w *worker) sync(ctx context.Context) bool {
	pod, gone := w.current()
	if gone || pod.DeletionTimestamp != nil {
		w.terminate(w.gracePeriod(pod))
		w.cleanup(ctx, pod, !gone)
		return true
	}
	if !w.ranAny && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
		return false // finished before this nodelet started: nothing to run
	}
	now := time.Now()
	if w.startTime.IsZero() {
		w.startTime = now
	}
	if w.net == nil {
		if pod.Spec.HostNetwork {
			w.net = &PodNet{IP: w.cfg.Node.IP, NetnsPath: w.cfg.Node.NetnsPath}
		} else {
			pn, err := w.cfg.Net.SetupPod(ctx, string(pod.UID))
			if err != nil {
				w.log.Warn("pod network setup failed", zap.Error(err))
				w.creating(fmt.Sprintf("pod network setup failed (retrying): %v", err))
				w.wakeAt(now.Add(w.cfg.RetryInterval))
				w.patchStatus(ctx)
				return false
			}
			w.net = &pn
		}
		w.ranAny = true
	}
	if w.vols == nil {
		v, err := w.prepareVolumes(ctx, pod, w.addrs())
		if err != nil {
			w.log.Warn("pod volume setup failed", zap.Error(err))
			w.creating(fmt.Sprintf("volume setup failed (retrying): %v", err))
			w.wakeAt(now.Add(w.cfg.RetryInterval))
			w.patchStatus(ctx)
			return false
		}
		w.vols = v
		w.refreshTokens(w.podCtx, pod, v.tokens)
		w.refreshVolumes(w.podCtx, w.cfg.VolumeRefreshInterval)
	}
	w.startContainers(ctx, pod, now)
	w.patchStatus(ctx)
	return false
}

func (w *worker) creating(msg string) {
	for _, c := range append(append([]*ctr{}, w.init...), w.ctrs...) {
		if c.proc == nil && c.st.Terminated == nil && c.st.LastTerminated == nil {
			c.st.Waiting = &Waiting{Reason: "ContainerCreating", Message: msg}
		}
	}
}

func (w *worker) startContainers(ctx context.Context, pod *corev1.Pod, now time.Time) {
	for _, c := range w.init {
		if IsSidecar(c.spec) {
			if c.proc == nil && c.st.Terminated == nil {
				w.maybeStart(ctx, pod, c, now)
			}
			if c.proc != nil && c.st.Started {
				continue
			}
			return
		}
		if c.st.succeeded() {
			continue
		}
		if c.proc != nil {
			return
		}
		if c.st.Terminated != nil { // failed, restartPolicy Never
			return
		}
		w.maybeStart(ctx, pod, c, now)
		return
	}
	for _, c := range w.ctrs {
		if c.proc == nil && c.st.Terminated == nil {
			w.maybeStart(ctx, pod, c, now)
		}
	}
	// Sidecars stop once the main containers have finished for good.
	if ph := podPhase(pod, w.podState()); ph == corev1.PodSucceeded || ph == corev1.PodFailed {
		for _, c := range w.init {
			if IsSidecar(c.spec) && !c.finished {
				c.finished = true
				if c.proc != nil {
					c.proc.stop(w.gracePeriodFor(c))
				}
			}
		}
	}
}

// maybeStart starts c unless it is backing off.
func (w *worker) maybeStart(ctx context.Context, pod *corev1.Pod, c *ctr, now time.Time) {
	if now.Before(c.notBefore) {
		w.wakeAt(c.notBefore)
		return
	}
	bin, err := w.cfg.Images.Resolve(c.spec.Image)
	if err != nil {
		reason := "ErrImagePull"
		if c.pullFailures > 0 {
			reason = "ImagePullBackOff"
		}
		c.pullFailures++
		_, d := w.cfg.Backoff.Next(c.pullFailures-1, 0)
		c.st.Waiting = &Waiting{Reason: reason, Message: err.Error()}
		c.notBefore = now.Add(d)
		w.wakeAt(c.notBefore)
		if c.pullFailures == 1 {
			w.log.Warn("unknown container image", zap.String("container", c.spec.Name), zap.Error(err))
		}
		return
	}
	if _, err := os.Stat(bin); err != nil {
		c.st.Waiting = &Waiting{Reason: "ErrImagePull", Message: fmt.Sprintf("binary for image %q is missing (%v): build it first", c.spec.Image, err)}
		c.notBefore = now.Add(w.cfg.RetryInterval)
		w.wakeAt(c.notBefore)
		return
	}
	c.pullFailures = 0
	spec, err := w.containerSpec(ctx, pod, c, bin)
	if err != nil {
		c.st.Waiting = &Waiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		c.notBefore = now.Add(w.cfg.RetryInterval)
		w.wakeAt(c.notBefore)
		w.log.Warn("container config error", zap.String("container", c.spec.Name), zap.Error(err))
		return
	}
	if err := w.startProcess(c, spec); err != nil {
		c.st.Waiting = &Waiting{Reason: "RunContainerError", Message: err.Error()}
		c.notBefore = now.Add(w.cfg.RetryInterval)
		w.wakeAt(c.notBefore)
		w.log.Warn("container start failed", zap.String("container", c.spec.Name), zap.Error(err))
		return
	}
	if c.instance > 1 {
		c.st.RestartCount++
	}
	c.st.ImageID = "file://" + bin
	c.st.Waiting, c.st.Terminated = nil, nil
	c.st.StartedAt = c.proc.started
	c.st.ContainerID = fmt.Sprintf("nodelet://%d", c.proc.pid)
	c.st.Started = c.spec.StartupProbe == nil
	c.st.Ready = c.st.Started && c.spec.ReadinessProbe == nil
	w.log.Info("container started", zap.String("container", c.spec.Name), zap.Int("pid", c.proc.pid), zap.Int32("restarts", c.st.RestartCount))
	w.startProbes(c)
}

// handle applies an event from a process waiter or a prober.
func (w *worker) handle(ev event) {
	c := ev.c
	if ev.instance != c.instance {
		return // stale: from an earlier instance
	}
	switch ev.kind {
	case evExited:
		w.exited(c, ev.term)
	case evReady:
		c.st.Ready = c.proc != nil
	case evNotReady:
		c.st.Ready = false
	case evStarted:
		c.st.Started = c.proc != nil
		c.st.Ready = c.st.Started && c.spec.ReadinessProbe == nil
	case evUnhealthy:
		if c.proc != nil {
			w.log.Info("container unhealthy, killing it", zap.String("container", c.spec.Name), zap.String("reason", ev.msg))
			c.proc.stop(w.gracePeriodFor(c))
		}
	}
}

func (w *worker) exited(c *ctr, term *Terminated) {
	if c.probeCancel != nil {
		c.probeCancel()
		c.probeCancel = nil
	}
	ranFor := term.FinishedAt.Sub(term.StartedAt)
	c.proc = nil
	c.st.StartedAt = time.Time{}
	c.st.Ready, c.st.Started = false, false
	pod, _ := w.current()
	policy := pod.Spec.RestartPolicy
	restart := policy == corev1.RestartPolicyAlways || policy == "" ||
		(policy == corev1.RestartPolicyOnFailure && term.ExitCode != 0)
	if c.isInit {
		restart = term.ExitCode != 0 && policy != corev1.RestartPolicyNever
	}
	if IsSidecar(c.spec) {
		restart = !c.finished
	}
	w.log.Info("container exited", zap.String("container", c.spec.Name), zap.Int32("exitCode", term.ExitCode), zap.Bool("restart", restart))
	if !restart {
		c.st.Terminated = term
		return
	}
	var d time.Duration
	c.step, d = w.cfg.Backoff.Next(c.step, ranFor)
	c.notBefore = term.FinishedAt.Add(d)
	c.st.LastTerminated = term
	c.st.Waiting = &Waiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", d, c.spec.Name, pod.Name, pod.Namespace, pod.UID)}
}

func (w *worker) gracePeriod(pod *corev1.Pod) time.Duration {
	g := int64(30)
	if pod.DeletionGracePeriodSeconds != nil {
		g = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	return min(time.Duration(g)*time.Second, w.cfg.MaxGracePeriod)
}

func (w *worker) gracePeriodFor(*ctr) time.Duration {
	pod, _ := w.current()
	g := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	return min(time.Duration(g)*time.Second, w.cfg.MaxGracePeriod)
}

// terminate stops every running container: SIGTERM to its process group,
// SIGKILL after grace, and waits until all have exited.
func (w *worker) terminate(grace time.Duration) {
	w.cancelPod()
	all := append(append([]*ctr{}, w.init...), w.ctrs...)
	running := 0
	for _, c := range all {
		if c.proc != nil {
			c.proc.signal(sigTERM)
			running++
		}
	}
	if running == 0 {
		return
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for running > 0 {
		select {
		case ev := <-w.events:
			if ev.kind == evExited && ev.instance == ev.c.instance && ev.c.proc != nil {
				ev.c.proc = nil
				ev.c.st.StartedAt = time.Time{}
				ev.c.st.Terminated = ev.term
				running--
			}
		case <-deadline.C:
			for _, c := range all {
				if c.proc != nil {
					w.log.Info("container did not stop in time, killing it", zap.String("container", c.spec.Name), zap.Duration("grace", grace))
					c.proc.signal(sigKILL)
				}
			}
		}
	}
}

// cleanup removes the pod's sandbox and files and, if it still exists in
// the API, deletes the pod object (as the kubelet does once it is done).
func (w *worker) cleanup(ctx context.Context, pod *corev1.Pod, deleteObj bool) {
	ctx = context.WithoutCancel(ctx)
	if !pod.Spec.HostNetwork {
		if err := w.cfg.Net.TeardownPod(ctx, string(pod.UID)); err != nil {
			w.log.Warn("pod network teardown failed", zap.Error(err))
		}
	}
	// Keep the logs; drop volumes and container specs.
	if err := removeAll(filepath.Join(w.dir, "volumes")); err != nil {
		w.log.Warn("remove pod volumes failed", zap.Error(err))
	}
	for _, c := range append(append([]*ctr{}, w.init...), w.ctrs...) {
		_ = removeAll(w.specPath(c))
	}
	if !deleteObj {
		w.log.Info("pod cleaned up")
		return
	}
	zero := int64(0)
	err := w.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		// A UID conflict means a new pod of the same name: not ours to delete.
		w.log.Warn("pod delete failed", zap.Error(err))
		return
	}
	w.log.Info("pod deleted")
}

func (w *worker) addrs() PodAddrs {
	var a PodAddrs
	if w.net != nil && w.net.IP.IsValid() {
		a.PodIPs = []string{w.net.IP.String()}
	}
	if w.cfg.Node.IP.IsValid() {
		a.HostIPs = []string{w.cfg.Node.IP.String()}
	}
	return a
}

func (w *worker) podState() PodState {
	a := w.addrs()
	st := PodState{PodIPs: a.PodIPs, HostIPs: a.HostIPs, StartTime: w.startTime, SandboxReady: w.net != nil}
	for _, c := range w.init {
		st.Init = append(st.Init, c.st)
	}
	for _, c := range w.ctrs {
		st.Containers = append(st.Containers, c.st)
	}
	return st
}

// patchStatus writes the desired status when it differs from the API's.
func (w *worker) patchStatus(ctx context.Context) {
	pod, _ := w.current()
	desired := BuildPodStatus(pod, w.podState(), time.Now())
	if apiequality.Semantic.DeepEqual(desired, pod.Status) {
		return
	}
	body, err := json.Marshal(map[string]any{"status": desired})
	if err != nil {
		w.log.Error("encode pod status failed", zap.Error(err))
		return
	}
	got, err := w.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			w.log.Warn("pod status patch failed", zap.Error(err))
			w.wakeAt(time.Now().Add(w.cfg.RetryInterval))
		}
		return
	}
	w.mu.Lock()
	if w.latest == pod && got.UID == pod.UID {
		w.latest = got
	}
	w.mu.Unlock()
}
