package restconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://172.30.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`

func TestNewFromKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := New(path, "ztunnel-capture")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://172.30.0.1:6443" || cfg.BearerToken != "abc" {
		t.Errorf("host %q token %q", cfg.Host, cfg.BearerToken)
	}
	if cfg.QPS != DefaultQPS || cfg.Burst != DefaultBurst || cfg.UserAgent != "ztunnel-capture" {
		t.Errorf("qps %v burst %d ua %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "missing"), ""); err == nil || !strings.Contains(err.Error(), "load kubeconfig") {
		t.Errorf("missing file: err = %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := New("", "")
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("outside a cluster: err = %v, want a hint to pass --kubeconfig", err)
	}
}
