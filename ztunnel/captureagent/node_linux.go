//go:build linux

package captureagent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

// DefaultBPFFS is the bpffs directory shared by ztunnel's two roles (DESIGN:
// hostPath /sys/fs/bpf/ambient); capture pins under <bpffs>/capture.
const DefaultBPFFS = "/sys/fs/bpf/ambient"

// Config is the capture role's configuration.
type Config struct {
	// NodeName is this node (spec.nodeName through the downward API).
	NodeName string
	// NodeIP picks the uplink (status.hostIP); invalid: the default route's
	// interface.
	NodeIP netip.Addr
	// BPFFS is the bpffs directory; pins go to BPFFS/capture.
	BPFFS string
	// Resync is the period of the full reconcile.
	Resync time.Duration
	// Notrack installs the nftables notrack rule (needed with kube-proxy).
	Notrack bool
	// Uninstall makes Start/Run a one-shot cleanup of the node (see Uninstall).
	Uninstall bool
	// UninstallOnExit cleans the node up when Run returns instead of leaving
	// capture in place (development; production uses a separate --uninstall run).
	UninstallOnExit bool
}

// PinDir is where the capture objects are pinned.
func (c Config) PinDir() string {
	if c.BPFFS == "" {
		return capture.DefaultPinDir
	}
	return filepath.Join(c.BPFFS, "capture")
}

// RegisterFlags binds the configuration to flags, with defaults from the
// environment (NODE_NAME, NODE_IP) as the DaemonSet sets them.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (env NODE_NAME, from spec.nodeName)")
	fs.Func("node-ip", "the node IP, whose interface is the uplink (env NODE_IP, from status.hostIP); default: the default route's interface", func(s string) error {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("node IP: %w", err)
		}
		c.NodeIP = a.Unmap()
		return nil
	})
	if a, err := netip.ParseAddr(os.Getenv("NODE_IP")); err == nil {
		c.NodeIP = a.Unmap()
	}
	fs.StringVar(&c.BPFFS, "bpffs", DefaultBPFFS, "bpffs directory shared with the proxy role")
	fs.DurationVar(&c.Resync, "capture-resync", DefaultResync, "period of the full capture reconcile")
	fs.BoolVar(&c.Notrack, "notrack", true, "install the nftables notrack rule for captured packets (needed on nodes running kube-proxy)")
	fs.BoolVar(&c.Uninstall, "uninstall", false, "remove capture from this node (links, maps, routing rules, nftables table) and exit")
	fs.BoolVar(&c.UninstallOnExit, "uninstall-on-exit", false, "remove capture from this node when the agent stops (development only: pods go uncaptured while it is down)")
}

// nodeSetup is the node state besides the program: policy routing for marked
// packets and the notrack rule.
type nodeSetup struct {
	routing capture.NodeRouting
	notrack *Notrack // nil: disabled
}

// Ensure implements NodeSetup.
func (s nodeSetup) Ensure(ctx context.Context) error {
	if err := s.routing.Ensure(); err != nil {
		return err
	}
	if s.notrack != nil {
		return s.notrack.Ensure(ctx)
	}
	return nil
}

// Node is the capture role of one node: the loaded program and the agent.
type Node struct {
	cfg   Config
	log   *zap.Logger
	objs  *capture.Objects
	agent *Agent
}

// Start prepares the node: loads the capture program (pinned under the
// bpffs), installs policy routing and the notrack rule, and builds the agent.
// It runs in the node's network namespace (the DaemonSet is hostNetwork) and
// needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN (bpffs).
func Start(ctx context.Context, cfg Config, client Kube, reg prometheus.Registerer, log *zap.Logger) (*Node, error) {
	return startNode(ctx, cfg, Options{Client: client}, reg, log)
}

// StartStatic is Start for a node without Kubernetes: the pods are fixed
// (ztunnel --role=capture --local-config; see [StaticFromWorkloads]).
func StartStatic(ctx context.Context, cfg Config, pods Static, reg prometheus.Registerer, log *zap.Logger) (*Node, error) {
	return startNode(ctx, cfg, Options{Static: &pods}, reg, log)
}

// startNode is Start with the pod source (Client or Static) in src.
func startNode(ctx context.Context, cfg Config, src Options, reg prometheus.Registerer, log *zap.Logger) (*Node, error) {
	if log == nil {
		log = zap.NewNop()
	}
	objs, err := capture.Load(capture.Options{PinDir: cfg.PinDir(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("capture agent: %w", err)
	}
	setup := nodeSetup{}
	if cfg.Notrack {
		setup.notrack = &Notrack{}
	}
	if err := setup.Ensure(ctx); err != nil {
		objs.Close()
		return nil, fmt.Errorf("capture agent: %w", err)
	}
	agent, err := New(Options{
		Client:    src.Client,
		Static:    src.Static,
		NodeName:  cfg.NodeName,
		Datapath:  objs,
		Veths:     RouteVeths{},
		Uplink:    NodeUplink{NodeIP: cfg.NodeIP},
		NodeSetup: setup,
		Resync:    cfg.Resync,
		Logger:    log,
		Registry:  reg,
	})
	if err == nil && reg != nil {
		err = reg.Register(NewStatsCollector(objs))
	}
	if err != nil {
		objs.Close()
		return nil, err
	}
	log.Info("capture agent started", zap.String("node", cfg.NodeName), zap.Stringer("nodeIP", cfg.NodeIP),
		zap.String("pinDir", cfg.PinDir()), zap.Bool("notrack", cfg.Notrack))
	return &Node{cfg: cfg, log: log, objs: objs, agent: agent}, nil
}

// Run reconciles until ctx is done. By default capture stays in place when it
// returns (enrolled pods keep failing closed until the agent and proxy are
// back); with UninstallOnExit the node is cleaned up.
func (n *Node) Run(ctx context.Context) error {
	err := n.agent.Run(ctx)
	if cerr := n.objs.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close capture objects: %w", cerr))
	}
	if n.cfg.UninstallOnExit {
		err = errors.Join(err, Uninstall(context.WithoutCancel(ctx), n.cfg, n.log))
	}
	return err
}

// Status is the agent's status, for the admin config_dump.
func (n *Node) Status() Status { return n.agent.Status() }

// Uninstall removes capture from the node: detaches every pinned link and
// removes the pins (maps go with their last user), then the policy routing
// and the nftables table — in that order, so no packet is marked once
// routing for marked packets is gone. Each step runs even if an earlier one
// failed; absent state is not an error. Enrolled pods' traffic goes direct
// from then on. It runs in the calling thread's network namespace.
func Uninstall(ctx context.Context, cfg Config, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	var errs []error
	if err := capture.Uninstall(cfg.PinDir()); err != nil {
		errs = append(errs, err)
	}
	if err := (capture.NodeRouting{}).Remove(); err != nil {
		errs = append(errs, err)
	}
	// The table is removed even with Notrack off: an earlier run may have
	// installed it. Without nft there is no table to remove.
	if err := (Notrack{}).Remove(ctx); err != nil && !notFound(err) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("uninstall capture: %w", err)
	}
	log.Info("capture uninstalled", zap.String("pinDir", cfg.PinDir()))
	return nil
}
