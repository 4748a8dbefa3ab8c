package framework

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ambient-mesh/ambient/hack/localcluster/cluster"
	"github.com/ambient-mesh/ambient/hack/localcluster/procs"
)

// ScaleDeployment sets a Deployment's replicas and waits until exactly that
// many of its pods exist and are ready (0: until none is left).
func (t *T) ScaleDeployment(namespace, name string, replicas int32, timeout time.Duration) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := t.Client.AppsV1().Deployments(namespace).Patch(t.Ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scale %s/%s to %d: %v", namespace, name, replicas, err)
	}
	t.Eventually(timeout, fmt.Sprintf("%s/%s scaled to %d", namespace, name, replicas), func() error {
		d, err := t.Client.AppsV1().Deployments(namespace).Get(t.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sel := metav1.FormatLabelSelector(d.Spec.Selector)
		pods, err := t.Client.CoreV1().Pods(namespace).List(t.Ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		if int32(len(pods.Items)) != replicas || d.Status.ReadyReplicas != replicas {
			return fmt.Errorf("%d pods, %d ready", len(pods.Items), d.Status.ReadyReplicas)
		}
		return nil
	})
}

// PauseControlPlane freezes a local-cluster control-plane process (e.g.
// "kube-apiserver") with SIGSTOP: its clients' connections hang as with a
// dead or partitioned server. The returned function resumes it (SIGCONT);
// it is also registered as a clean-up, so a failing test never leaves the
// cluster frozen. On an external cluster the test is skipped.
func (t *T) PauseControlPlane(component string) (resume func()) {
	t.Helper()
	if t.StateDir == "" {
		t.Skipf("pausing %s needs the local cluster", component)
	}
	c, err := cluster.Load(t.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	pid := procs.ReadPid(c.ControlPlane().RunDir(), component)
	if pid == 0 || !procs.Alive(pid) {
		t.Fatalf("%s is not running (pid %d)", component, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s (pid %d): %v", component, pid, err)
	}
	resumed := false
	resume = func() {
		if resumed {
			return
		}
		resumed = true
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("SIGCONT %s (pid %d): %v", component, pid, err)
		}
	}
	t.Cleanup(resume)
	return resume
}

// ProxyStatus is one row of `ambientctl proxy-status -o json`.
type ProxyStatus struct {
	Proxy struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"proxy"`
	Istiod     string `json:"istiod"`
	Connection *struct {
		Types map[string]struct {
			SentVersion  string `json:"sentVersion"`
			AckedVersion string `json:"ackedVersion"`
			Nacks        int    `json:"nacks"`
		} `json:"types"`
	} `json:"connection"`
}

// WaitProxiesInSync waits until `ambientctl proxy-status` shows every
// ztunnel and waypoint connected to an istiod-lite replica with every
// resource type acknowledged at the version last sent.
func (t *T) WaitProxiesInSync(timeout time.Duration) []ProxyStatus {
	t.Helper()
	var rows []ProxyStatus
	t.Eventually(timeout, "every proxy connected and in sync (proxy-status)", func() error {
		out, err := t.Ambientctl(t.Ctx, "proxy-status", "-o", "json")
		if err != nil {
			return err
		}
		rows = nil
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			return fmt.Errorf("proxy-status -o json: %w: %s", err, out)
		}
		if len(rows) == 0 {
			return fmt.Errorf("proxy-status lists no proxies")
		}
		for _, r := range rows {
			if r.Connection == nil {
				return fmt.Errorf("%s/%s is not connected", r.Proxy.Namespace, r.Proxy.Name)
			}
			for typ, s := range r.Connection.Types {
				if s.SentVersion != s.AckedVersion {
					return fmt.Errorf("%s/%s: %s sent %q, acked %q", r.Proxy.Namespace, r.Proxy.Name, typ, s.SentVersion, s.AckedVersion)
				}
			}
		}
		return nil
	})
	return rows
}

// ContainerPID finds the process of pod's container running binary (local
// cluster only: containers are processes of this machine, and the node agent
// sets HOSTNAME to the pod's name, except for host-network pods). It
// returns 0 when none runs, e.g. while the node agent restarts the container.
func (t *T) ContainerPID(pod *corev1.Pod, binary string) int {
	t.Helper()
	if t.StateDir == "" {
		t.Skip("finding a container's process needs the local cluster")
	}
	return processWithEnv("HOSTNAME="+pod.Name, func(cmdline []byte) bool {
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		return filepath.Base(string(argv0)) == binary
	})
}

// processWithEnv returns the pid of a process whose environment holds the
// entry env (KEY=value) and whose NUL-separated command line satisfies
// match, or 0.
func processWithEnv(env string, match func(cmdline []byte) bool) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !match(cmd) {
			continue
		}
		environ, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(environ, []byte{0}) {
			if string(kv) == env {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	return 0
}
