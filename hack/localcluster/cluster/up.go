package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ambient-mesh/ambient/hack/localcluster/controlplane"
	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
	"github.com/ambient-mesh/ambient/hack/localcluster/procs"
	"golang.org/x/sys/unix"
)

const stateFile = "cluster.json"

// Up brings the cluster up and returns once every node is Ready. Running it
// on a cluster that is already up is harmless.
func Up(ctx context.Context, c Config, self string, log *zap.Logger) error {
	if err := c.Validate(); err != nil {
		return err
	}
	t0 := time.Now()
	if prev, err := Load(c.StateDir); err == nil && prev.Nodes != c.Nodes {
		return fmt.Errorf("a %d-node cluster is already up in %s: run `make cluster-down` first", prev.Nodes, c.StateDir)
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(filepath.Join(c.StateDir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("write cluster state: %w", err)
	}
	nodes, err := netsetup.Plan(c.Nodes)
	if err != nil {
		return err
	}
	log.Info("creating network", zap.Int("nodes", len(nodes)))
	if err := netsetup.CreateUnderlay(); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := netsetup.CreateNode(n, nodes); err != nil {
			return err
		}
		if err := mountBPFFS(c.BPFFS(n.Name)); err != nil {
			return err
		}
		if err := os.MkdirAll(c.HostPathRoot(n.Name), 0o755); err != nil {
			return err
		}
	}
	log.Info("starting control plane", zap.String("state", c.StateDir))
	cp := c.ControlPlane()
	if err := controlplane.Start(ctx, cp); err != nil {
		return err
	}
	client, err := Client(c.StateDir)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := registerNode(ctx, client, n); err != nil {
			return err
		}
		if err := startKubeProxy(c, n); err != nil {
			return err
		}
	}
	if pid := procs.ReadPid(cp.RunDir(), "localcluster-daemon"); pid == 0 || !procs.Alive(pid) {
		if _, err := procs.Start(procs.Spec{
			Name: "localcluster-daemon", Argv: []string{self, "daemon", "--state-dir", c.StateDir},
			LogDir: cp.LogDir(), PidDir: cp.RunDir(), Marker: c.StateDir,
		}); err != nil {
			return err
		}
	}
	log.Info("waiting for nodes to be ready")
	if err := waitReady(ctx, client, c, nodes); err != nil {
		return err
	}
	log.Info("cluster up", zap.Duration("took", time.Since(t0).Round(time.Millisecond)), zap.String("kubeconfig", cp.Kubeconfig()))
	return nil
}

// Load reads the configuration of the cluster running in stateDir.
func Load(stateDir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return c, fmt.Errorf("no cluster in %s: %w (run `make cluster-up`)", stateDir, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse %s: %w", stateFile, err)
	}
	return c, nil
}

// Client returns a clientset for the cluster in stateDir.
func Client(stateDir string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(stateDir, "kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	return kubernetes.NewForConfig(rc)
}

func mountBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

func registerNode(ctx context.Context, client kubernetes.Interface, n netsetup.NodeSpec) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
			"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"ambient.dev/localcluster": "true",
		}},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", n.Name, err)
	}
	return nil
}

func startKubeProxy(c Config, n netsetup.NodeSpec) error {
	cp := c.ControlPlane()
	name := "kube-proxy-" + n.Name
	if pid := procs.ReadPid(cp.RunDir(), name); pid != 0 && procs.Alive(pid) {
		return nil
	}
	argv := append([]string{filepath.Join(c.ControlBinDir, "kube-proxy"),
		"--kubeconfig=" + cp.Kubeconfig(), "--hostname-override=" + n.Name,
		"--proxy-mode=nftables", "--cluster-cidr=" + netsetup.ClusterCIDR.String(),
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0s",
		"--conntrack-tcp-timeout-close-wait=0s", "--v=1"}, c.KubeProxyExtra...)
	_, err := procs.Start(procs.Spec{Name: name, Argv: argv, Netns: n.NetnsPath, LogDir: cp.LogDir(), PidDir: cp.RunDir(), Marker: c.StateDir})
	return err
}

func waitReady(ctx context.Context, client kubernetes.Interface, c Config, nodes []netsetup.NodeSpec) error {
	timeout := time.Duration(c.ReadyTimeoutS) * time.Second
	if timeout == 0 {
		timeout = 120 * time.Second
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		last = readiness(ctx, client, nodes)
		if last == "" {
			return nil
		}
		if pid := procs.ReadPid(c.ControlPlane().RunDir(), "localcluster-daemon"); pid != 0 && !procs.Alive(pid) {
			return fmt.Errorf("the node daemon exited; see %s", filepath.Join(c.ControlPlane().LogDir(), "localcluster-daemon.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster not ready after %s: %s (logs in %s)", timeout, last, c.ControlPlane().LogDir())
}

// readiness returns "" when every node is Ready and the default service
// account exists, else what is still missing.
func readiness(ctx context.Context, client kubernetes.Interface, nodes []netsetup.NodeSpec) string {
	var missing []string
	for _, n := range nodes {
		node, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			missing = append(missing, n.Name+": "+err.Error())
			continue
		}
		if !NodeReady(node) {
			missing = append(missing, "node "+n.Name+" not Ready")
		}
		for _, t := range node.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				missing = append(missing, "node "+n.Name+" tainted "+t.Key)
			}
		}
	}
	if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		missing = append(missing, "default service account not yet created")
	}
	return strings.Join(missing, "; ")
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ErrNotRunning is returned by Status when no cluster is up.
var ErrNotRunning = errors.New("no local cluster is running")
