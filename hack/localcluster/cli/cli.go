package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/hack/localcluster/cluster"
	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	"github.com/ambient-mesh/ambient/pkg/log"
)

const usage = `localcluster runs a real Kubernetes cluster on this machine: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kube-proxy built from source, nodes as network
namespaces, and pods as processes run by a node agent in place of the kubelet.

Usage:
  localcluster up [--nodes 2] [--state-dir DIR] [--bin-dir DIR] [--controlplane-bin-dir DIR]
  localcluster down [--state-dir DIR]
  localcluster status [--state-dir DIR]
  localcluster kubeconfig [--state-dir DIR]

Examples:
  make cluster-up NODES=2          # builds what is needed, then: localcluster up --nodes 2
  export KUBECONFIG=$(localcluster kubeconfig)
  kubectl get nodes,pods -A -o wide
  make cluster-down                # removes every process, namespace, link and mount it made

Must run as root. Logs: <state-dir>/logs (control plane, kube-proxy, daemon) and
<state-dir>/nodes/<node>/pods/<ns>_<pod>_<uid>/<container>.log.
`

// Main runs one localcluster command.
func Main(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(usage)
		return nil
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run-container": // internal: the container shim, started by the node agent
		if len(rest) != 1 {
			return errors.New("usage: run-container SPEC.json")
		}
		return shim.Main(rest[0])
	case "exec-container": // internal: exec probes
		if len(rest) < 2 {
			return errors.New("usage: exec-container SPEC.json -- ARGV")
		}
		argv := rest[1:]
		if argv[0] == "--" {
			argv = argv[1:]
		}
		return shim.Exec(rest[0], argv)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	stateDir := fs.String("state-dir", envOr("AMBIENT_CLUSTER_STATE", cluster.DefaultStateDir), "where the cluster keeps its state")
	nodes := fs.Int("nodes", 2, "number of nodes")
	binDir := fs.String("bin-dir", envOr("AMBIENT_BIN_DIR", "_output/bin"), "the project's binaries (container images map to files here)")
	cpBin := fs.String("controlplane-bin-dir", envOr("CONTROLPLANE_BIN_DIR", cluster.DefaultControlBinDir()), "etcd, kube-apiserver, ... built by hack/controlplane/build.sh")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%s: %w (see localcluster --help)", cmd, err)
	}
	lvl := "info"
	if *verbose {
		lvl = "debug"
	}
	l, err := log.New(log.Options{Level: lvl, Component: "localcluster", JSON: cmd == "daemon"})
	if err != nil {
		return err
	}
	logger := l.Logger
	defer func() { _ = logger.Sync() }()
	switch cmd {
	case "up":
		self, err := os.Executable()
		if err != nil {
			return err
		}
		abs, err := filepath.Abs(*binDir)
		if err != nil {
			return err
		}
		c := cluster.Config{Nodes: *nodes, StateDir: *stateDir, ControlBinDir: *cpBin, ImageBinDir: abs,
			AdminToken: "ambient-admin-token"}
		if err := cluster.Up(ctx, c, self, logger); err != nil {
			return err
		}
		fmt.Printf("\nThe local cluster is up (%d nodes).\n  export KUBECONFIG=%s\n  kubectl get nodes,pods -A -o wide\n",
			*nodes, filepath.Join(*stateDir, "kubeconfig"))
		return nil
	case "down":
		if err := cluster.Down(*stateDir); err != nil {
			return err
		}
		fmt.Println("local cluster removed")
		return nil
	case "status":
		return cluster.Status(ctx, *stateDir, os.Stdout)
	case "kubeconfig":
		if _, err := cluster.Load(*stateDir); err != nil {
			return err
		}
		fmt.Println(filepath.Join(*stateDir, "kubeconfig"))
		return nil
	case "daemon":
		logger.Info("node daemon starting", zap.String("state", *stateDir))
		return cluster.RunDaemon(ctx, *stateDir, logger)
	}
	return fmt.Errorf("unknown command %q (want up, down, status or kubeconfig)", cmd)
}

func envOr(k, def string) string {
	if v := strings.TrimSpace(os.Getenv(k)); v != "" {
		return v
	}
	return def
}
