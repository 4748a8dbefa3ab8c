package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ambient-mesh/ambient/hack/localcluster/procs"
)

// Config describes the control plane to start.
type Config struct {
	BinDir      string // where hack/controlplane/build.sh put the binaries
	StateDir    string // cluster state: pki/, etcd/, logs/, run/, kubeconfig
	APIAddr     net.IP // address the API server binds and advertises
	APIPort     int
	ServiceCIDR string
	ClusterCIDR string
	AdminToken  string
	Marker      string // procs.MarkerEnv value
}

// Paths of the files a started control plane leaves in its state directory.
func (c Config) Kubeconfig() string { return filepath.Join(c.StateDir, "kubeconfig") }
func (c Config) LogDir() string     { return filepath.Join(c.StateDir, "logs") }
func (c Config) RunDir() string     { return filepath.Join(c.StateDir, "run") }
func (c Config) PKI() PKI           { return NewPKI(filepath.Join(c.StateDir, "pki")) }

// Server is the API server's URL.
func (c Config) Server() string {
	return "https://" + net.JoinHostPort(c.APIAddr.String(), strconv.Itoa(c.APIPort))
}

// Components in start order.
var Components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// Binaries the control plane needs from BinDir.
var Binaries = append(append([]string{}, Components...), "kube-proxy", "kubectl")

// CheckBinaries returns an error naming the first missing binary and how to build it.
func (c Config) CheckBinaries() error {
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			return fmt.Errorf("control-plane binary %s not found in %s: run `make controlplane` (hack/controlplane/build.sh) first", b, c.BinDir)
		}
	}
	return nil
}

// Start brings up etcd, the API server, the controller manager and the
// scheduler, waits for each to be healthy and writes the admin kubeconfig.
func Start(ctx context.Context, c Config) error {
	if err := c.CheckBinaries(); err != nil {
		return err
	}
	pki := c.PKI()
	if err := pki.Ensure([]net.IP{c.APIAddr, firstIP(c.ServiceCIDR)}, c.AdminToken); err != nil {
		return err
	}
	if err := os.WriteFile(c.Kubeconfig(), []byte(c.kubeconfig()), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	bin := func(n string) string { return filepath.Join(c.BinDir, n) }
	kc := c.Kubeconfig()
	etcdDir := filepath.Join(c.StateDir, "etcd")
	specs := map[string][]string{
		"etcd": {bin("etcd"), "--name=local", "--data-dir=" + etcdDir,
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=local=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
			"--unsafe-no-fsync", "--quota-backend-bytes=2147483648", "--log-level=warn"},
		"kube-apiserver": {bin("kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
			"--bind-address=" + c.APIAddr.String(), "--advertise-address=" + c.APIAddr.String(),
			"--secure-port=" + strconv.Itoa(c.APIPort),
			"--tls-cert-file=" + pki.ServerCert, "--tls-private-key-file=" + pki.ServerKey,
			"--client-ca-file=" + pki.CACert,
			"--service-cluster-ip-range=" + c.ServiceCIDR,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki.SAPub, "--service-account-signing-key-file=" + pki.SAKey,
			"--token-auth-file=" + pki.Tokens, "--authorization-mode=Node,RBAC",
			"--allow-privileged=true", "--profiling=false", "--v=1"},
		"kube-controller-manager": {bin("kube-controller-manager"), "--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10257",
			"--service-account-private-key-file=" + pki.SAKey, "--root-ca-file=" + pki.CACert,
			"--use-service-account-credentials=true",
			"--cluster-cidr=" + c.ClusterCIDR, "--service-cluster-ip-range=" + c.ServiceCIDR,
			"--allocate-node-cidrs=false", "--controllers=*,-nodeipam",
			"--node-monitor-grace-period=40s", "--concurrent-gc-syncs=5", "--v=1"},
		"kube-scheduler": {bin("kube-scheduler"), "--kubeconfig=" + kc,
			"--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259", "--v=1"},
	}
	health := map[string]string{
		"etcd":                    "http://127.0.0.1:2379/health",
		"kube-apiserver":          c.Server() + "/readyz",
		"kube-controller-manager": "https://127.0.0.1:10257/healthz",
		"kube-scheduler":          "https://127.0.0.1:10259/healthz",
	}
	for _, name := range Components {
		if pid := procs.ReadPid(c.RunDir(), name); pid != 0 && procs.Alive(pid) {
			continue // already running (cluster-up run twice)
		}
		pid, err := procs.Start(procs.Spec{Name: name, Argv: specs[name], LogDir: c.LogDir(), PidDir: c.RunDir(), Marker: c.Marker})
		if err != nil {
			return err
		}
		if err := waitHealthy(ctx, name, health[name], c.AdminToken, pid, filepath.Join(c.LogDir(), name+".log")); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ambient-local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: ambient-local
  context: {cluster: ambient-local, user: admin}
current-context: ambient-local
`, c.Server(), c.PKI().CACert, c.AdminToken)
}

// waitHealthy polls url until it answers 200, the process dies, or 90 s pass.
func waitHealthy(ctx context.Context, name, url, token string, pid int, logPath string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // readiness probe of our own process on loopback
	}}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !procs.Alive(pid) {
			return fmt.Errorf("%s exited during start-up; see %s:\n%s", name, logPath, tail(logPath, 15))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy at %s after 90s; see %s:\n%s", name, url, logPath, tail(logPath, 15))
}

// Stop stops the control plane processes recorded in the run directory, in
// reverse start order.
func Stop(c Config) error {
	for i := len(Components) - 1; i >= 0; i-- {
		if pid := procs.ReadPid(c.RunDir(), Components[i]); pid != 0 {
			if err := procs.Stop([]int{pid}, 10*time.Second); err != nil {
				return fmt.Errorf("stop %s: %w", Components[i], err)
			}
		}
	}
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines++
			if lines > n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// firstIP returns the first host address of a CIDR (the kubernetes Service IP).
func firstIP(cidr string) net.IP {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil
	}
	ip := n.IP.To4()
	out := make(net.IP, len(ip))
	copy(out, ip)
	out[len(out)-1]++
	return out
}
