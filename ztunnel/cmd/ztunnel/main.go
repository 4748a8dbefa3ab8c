// Command ztunnel is the ambient mesh's per-node L4 proxy; see
// ztunnel/README.md and `ztunnel --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ambient-mesh/ambient/pkg/log"
	"github.com/ambient-mesh/ambient/ztunnel/app"
	"github.com/ambient-mesh/ambient/ztunnel/config"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], config.OSEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel:", err)
		os.Exit(2)
	}
	l, err := log.New(log.Options{Level: cfg.LogLevel, JSON: cfg.LogJSON, Component: "ztunnel"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztunnel:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, l.Logger, l.Level); err != nil {
		l.Error("ztunnel failed", log.Err(err))
		os.Exit(1)
	}
}
