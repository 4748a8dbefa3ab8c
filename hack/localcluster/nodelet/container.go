package nodelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

const (
	sigTERM = unix.SIGTERM
	sigKILL = unix.SIGKILL
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ctr is the worker's record of one container.
type ctr struct {
	spec         corev1.Container
	isInit       bool
	st           ContainerState
	proc         *proc // running instance, nil if none
	instance     int   // incremented on every start
	step         int   // crash-loop back-off step
	notBefore    time.Time
	pullFailures int
	probeCancel  context.CancelFunc
	finished     bool // a sidecar stopped because the pod finished
}

// proc is one running container process (a process group).
type proc struct {
	pid     int
	started time.Time
	done    chan struct{}
	w       *worker
}

func (p *proc) signal(sig unix.Signal) {
	select {
	case <-p.done:
	default:
		_ = unix.Kill(-p.pid, sig)
	}
}

// stop sends SIGTERM now and SIGKILL after grace unless the process exited.
func (p *proc) stop(grace time.Duration) {
	p.signal(sigTERM)
	p.w.bg.Add(1)
	go func() {
		defer p.w.bg.Done()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.signal(sigKILL)
		}
	}()
}

func (w *worker) specPath(c *ctr) string {
	return filepath.Join(w.dir, c.spec.Name+".json")
}

// LogPath is where a container's stdout and stderr are appended.
func LogPath(stateDir string, pod *corev1.Pod, container string) string {
	return filepath.Join(stateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), container+".log")
}

// containerSpec builds the shim's spec for c: argv, env, mounts, netns.
func (w *worker) containerSpec(ctx context.Context, pod *corev1.Pod, c *ctr, bin string) (shim.Spec, error) {
	hostname := pod.Name
	if pod.Spec.HostNetwork {
		hostname = w.cfg.Node.Name
	}
	base := []EnvVar{{"PATH", defaultPath}, {"HOSTNAME", hostname}}
	if w.cfg.ServiceHost != "" {
		base = append(base,
			EnvVar{"KUBERNETES_SERVICE_HOST", w.cfg.ServiceHost},
			EnvVar{"KUBERNETES_SERVICE_PORT", w.cfg.ServicePort},
			EnvVar{"KUBERNETES_SERVICE_PORT_HTTPS", w.cfg.ServicePort},
			EnvVar{"KUBERNETES_PORT", "tcp://" + joinHostPort(w.cfg.ServiceHost, w.cfg.ServicePort)},
		)
	}
	env, err := ResolveEnv(pod, &c.spec, w.addrs(), base, clientRefs{ctx: ctx, client: w.cfg.Client, ns: pod.Namespace})
	if err != nil {
		return shim.Spec{}, err
	}
	isImageBinary := func(s string) (string, bool) {
		name := filepath.Base(s)
		if name == filepath.Base(bin) || name == ImageName(c.spec.Image) {
			return bin, true
		}
		if p, err := w.cfg.Images.Resolve(name); err == nil {
			return p, true
		}
		return "", false
	}
	spec := shim.Spec{
		Argv:             BuildArgv(bin, c.spec.Command, c.spec.Args, env, isImageBinary),
		Dir:              c.spec.WorkingDir,
		NetnsPath:        w.net.NetnsPath,
		CreatedPathsFile: filepath.Join(w.cfg.StateDir, CreatedPathsFile),
	}
	if spec.Dir == "" {
		spec.Dir = "/"
	}
	for _, e := range env {
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	spec.Env = append(spec.Env, MarkerEnv+"="+w.cfg.Marker)
	spec.Mounts, err = w.mounts(pod, c, env)
	if err != nil {
		return shim.Spec{}, err
	}
	rc, err := w.resolvConfMount(pod)
	if err != nil {
		return shim.Spec{}, err
	}
	spec.Mounts = withResolvConf(spec.Mounts, rc) // a file: nothing mounts below it, so last is safe
	return spec, nil
}

// mounts maps c's volumeMounts to bind mounts, parents first.
func (w *worker) mounts(pod *corev1.Pod, c *ctr, env []EnvVar) ([]shim.Mount, error) {
	kinds := map[string]corev1.VolumeSource{}
	for _, v := range pod.Spec.Volumes {
		kinds[v.Name] = v.VolumeSource
	}
	idx := map[string]int{}
	for i, e := range env {
		idx[e.Name] = i
	}
	var ms []shim.Mount
	for _, vm := range c.spec.VolumeMounts {
		src, ok := w.vols.dirs[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q of container %q names no volume of the pod", vm.Name, c.spec.Name)
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = Expand(vm.SubPathExpr, lookupIn(env, idx))
		}
		if sub != "" {
			if strings.Contains(sub, "..") || filepath.IsAbs(sub) {
				return nil, fmt.Errorf("volumeMount %q: subPath %q must be relative without '..'", vm.Name, sub)
			}
			src = filepath.Join(src, sub)
			if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, fmt.Errorf("volumeMount %q: create subPath: %w", vm.Name, err)
				}
			}
		}
		k := kinds[vm.Name]
		ro := vm.ReadOnly || k.ConfigMap != nil || k.Secret != nil || k.Projected != nil || k.DownwardAPI != nil
		ms = append(ms, shim.Mount{Source: src, Target: filepath.Clean(vm.MountPath), ReadOnly: ro})
	}
	if needsAutoSA(pod) {
		if src, ok := w.vols.dirs[autoSAVolume]; ok {
			ms = append(ms, shim.Mount{Source: src, Target: ServiceAccountMountPath, ReadOnly: true})
		}
	}
	sort.SliceStable(ms, func(i, j int) bool {
		return strings.Count(ms[i].Target, "/") < strings.Count(ms[j].Target, "/")
	})
	return ms, nil
}

// startProcess writes spec and starts the shim for c; a goroutine reports
// the exit as an evExited event.
func (w *worker) startProcess(c *ctr, spec shim.Spec) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("pod dir: %w", err)
	}
	specPath := w.specPath(c)
	if err := shim.WriteSpec(specPath, spec); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(w.dir, c.spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(w.cfg.ShimPath, "run-container", specPath)
	cmd.Env = []string{MarkerEnv + "=" + w.cfg.Marker}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start container shim %s: %w", w.cfg.ShimPath, err)
	}
	c.instance++
	p := &proc{pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{}), w: w}
	c.proc = p
	ev := event{c: c, instance: c.instance, kind: evExited}
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		_ = cmd.Wait()
		close(p.done)
		_ = unix.Kill(-p.pid, unix.SIGKILL) // what is left of the group dies with its leader
		ev.term = termination(cmd.ProcessState, p.started, time.Now())
		w.events <- ev
	}()
	return nil
}

// termination converts a wait status into a Terminated record.
func termination(ps *os.ProcessState, started, finished time.Time) *Terminated {
	t := &Terminated{StartedAt: started, FinishedAt: finished, Reason: "Error"}
	if ps == nil {
		t.ExitCode = 128
		return t
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Signal = int32(ws.Signal())
		t.ExitCode = 128 + t.Signal
	} else {
		t.ExitCode = int32(ps.ExitCode())
	}
	if t.ExitCode == 0 {
		t.Reason = "Completed"
	}
	return t
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}
