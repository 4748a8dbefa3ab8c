package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/ambient-mesh/ambient/hack/localcluster/controlplane"
	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
)

// Config describes a local cluster.
type Config struct {
	Nodes          int
	StateDir       string // everything the cluster writes, removed by Down
	ControlBinDir  string // etcd, kube-apiserver, ... (hack/controlplane/build.sh)
	ImageBinDir    string // the project's binaries; images map to files here
	AdminToken     string
	ReadyTimeoutS  int
	KubeProxyExtra []string
}

// DefaultStateDir is where the cluster keeps its state unless told otherwise.
const DefaultStateDir = "/tmp/ambient-localcluster"

// DefaultControlBinDir mirrors hack/controlplane/build.sh's default.
func DefaultControlBinDir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "ambient", "controlplane", "bin")
}

// ControlPlane returns the control plane configuration of the cluster.
func (c Config) ControlPlane() controlplane.Config {
	return controlplane.Config{
		BinDir:      c.ControlBinDir,
		StateDir:    c.StateDir,
		APIAddr:     net.IP(netsetup.RootAddr.AsSlice()),
		APIPort:     6443,
		ServiceCIDR: netsetup.ServiceCIDR.String(),
		ClusterCIDR: netsetup.ClusterCIDR.String(),
		AdminToken:  c.AdminToken,
		Marker:      c.StateDir,
	}
}

// NodeDir is the per-node state directory (hostPath root, bpffs, pod files).
func (c Config) NodeDir(node string) string { return filepath.Join(c.StateDir, "nodes", node) }

// BPFFS is the node's private bpffs mount.
func (c Config) BPFFS(node string) string { return filepath.Join(c.NodeDir(node), "bpffs") }

// HostPathRoot is where the node's hostPath volumes live.
func (c Config) HostPathRoot(node string) string { return filepath.Join(c.NodeDir(node), "root") }

// Validate checks the configuration and names the fix for what is wrong.
func (c Config) Validate() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the local cluster creates network namespaces and mounts: run it as root")
	}
	if c.Nodes < 1 || c.Nodes > 16 {
		return fmt.Errorf("NODES=%d: want 1..16", c.Nodes)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", c.StateDir)
	}
	if st, err := os.Stat(c.ImageBinDir); err != nil || !st.IsDir() {
		return fmt.Errorf("image binary dir %q not found: run `make build` first", c.ImageBinDir)
	}
	return c.ControlPlane().CheckBinaries()
}
