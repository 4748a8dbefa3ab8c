package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/admin"
	"github.com/ambient-mesh/ambient/pkg/kube/corev1client"
	"github.com/ambient-mesh/ambient/pkg/kube/restconfig"
	"github.com/ambient-mesh/ambient/ztunnel/captureagent"
	"github.com/ambient-mesh/ambient/ztunnel/config"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// captureMetricsAddr serves the capture role's metrics and status (the proxy
// role owns 15020).
const captureMetricsAddr = "127.0.0.1:15022"

func runCapture(ctx context.Context, cfg config.Config, log *zap.Logger) error {
	ccfg := captureagent.Config{
		NodeName: cfg.Node, NodeIP: cfg.NodeIP, BPFFS: cfg.BPFFS, Resync: cfg.CaptureResync,
		Notrack: cfg.Notrack, Uninstall: cfg.Uninstall, UninstallOnExit: cfg.UninstallOnExit,
	}
	if cfg.Uninstall {
		if err := captureagent.Uninstall(ctx, ccfg, log); err != nil {
			return err
		}
		log.Info("capture removed from this node")
		return nil
	}
	reg := prometheus.NewRegistry()
	var node *captureagent.Node
	var err error
	if cfg.LocalConfig != "" {
		// No Kubernetes: this node's workloads of the local config are its pods.
		addrs, _, lerr := state.LoadLocalConfig(cfg.LocalConfig)
		if lerr != nil {
			return lerr
		}
		node, err = captureagent.StartStatic(ctx, ccfg, captureagent.StaticFromWorkloads(addrs), reg, log.Named("capture"))
	} else {
		// Only core/v1 Pods and Namespaces: corev1client, not a generated
		// clientset (whose scheme links every API group into ztunnel).
		rc, kerr := restconfig.New(cfg.Kubeconfig, "ztunnel-capture")
		if kerr != nil {
			return kerr
		}
		client, kerr := corev1client.New(rc)
		if kerr != nil {
			return fmt.Errorf("kubernetes client: %w", kerr)
		}
		node, err = captureagent.Start(ctx, ccfg, client, reg, log.Named("capture"))
	}
	if err != nil {
		return fmt.Errorf("start capture (needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and a bpffs at %s): %w", cfg.BPFFS, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", admin.Metrics(reg))
	adm := admin.New(zap.NewAtomicLevel())
	adm.Register("capture", func() any { return node.Status() })
	mux.Handle("/config_dump", adm.Handler())
	srv := &http.Server{Addr: captureMetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// During a surge rollout the capture container this one replaces
		// still holds the address: wait for it.
		if err := serveWhenFree(ctx, srv, log); err != nil {
			log.Warn("capture status server failed", zap.Error(err))
		}
	}()
	defer func() { _ = srv.Close() }()
	log.Info("capture running", zap.String("node", cfg.Node), zap.String("bpffs", cfg.BPFFS))
	return node.Run(ctx)
}
