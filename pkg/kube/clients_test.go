package kube

import (
	"os"
	"path/filepath"
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

// TestRESTConfigFromKubeconfig: RESTConfig is restconfig.New (whose own
// tests cover its errors) and the clients build from it.
func TestRESTConfigFromKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(path, "istiod-lite/test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://172.30.0.1:6443" || cfg.BearerToken != "abc" {
		t.Errorf("host %q token %q", cfg.Host, cfg.BearerToken)
	}
	if cfg.QPS != DefaultQPS || cfg.Burst != DefaultBurst || cfg.UserAgent != "istiod-lite/test" {
		t.Errorf("qps %v burst %d ua %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
	}
	c, err := NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kube == nil || c.Gateway == nil || c.Istio == nil {
		t.Errorf("missing client: %+v", c)
	}
}
