package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SystemNamespace is where the mesh is installed.
const SystemNamespace = "istio-system"

// Ambientctl runs the project's CLI against the test cluster and returns its
// combined output.
func (e *Env) Ambientctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "ambientctl"), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ambientctl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// InstallMesh installs the mesh with ambientctl and waits for it; it is
// idempotent (an installed mesh is upgraded in place).
func InstallMesh() error {
	if env == nil {
		return fmt.Errorf("framework.Main has not set up the cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	out, err := env.Ambientctl(ctx, "install", "--timeout", "5m")
	fmt.Fprintln(os.Stderr, out)
	return err
}

// ZtunnelPod returns the ztunnel pod on node.
func (t *T) ZtunnelPod(node string) *corev1.Pod {
	t.Helper()
	l, err := t.Client.CoreV1().Pods(SystemNamespace).List(t.Ctx, metav1.ListOptions{LabelSelector: "app=ztunnel", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(l.Items) == 0 {
		t.Fatalf("no ztunnel pod on %s: %v", node, err)
	}
	return &l.Items[0]
}

// ProxyGet fetches path (with an optional ?query) from a pod's port through
// the API server's pods/proxy.
func (t *T) ProxyGet(p *corev1.Pod, port, path string) ([]byte, error) {
	path, query, _ := strings.Cut(path, "?")
	params := map[string]string{}
	for _, kv := range strings.Split(query, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			params[k] = v
		}
	}
	return t.Client.CoreV1().Pods(p.Namespace).ProxyGet("http", p.Name, port, path, params).DoRaw(t.Ctx)
}
