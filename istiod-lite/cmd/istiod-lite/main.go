package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/istiod-lite/app"
	"github.com/ambient-mesh/ambient/istiod-lite/config"
	"github.com/ambient-mesh/ambient/pkg/log"
	"github.com/ambient-mesh/ambient/pkg/version"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "istiod-lite:", err)
		os.Exit(2)
	}
	logger, err := log.New(log.Options{Level: cfg.LogLevel, JSON: true, Component: "istiod-lite"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "istiod-lite: logger:", err)
		os.Exit(2)
	}
	logger.Info("starting", append(cfg.Fields(), zap.String("version", version.String()))...)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a, err := app.Build(ctx, cfg, logger.Logger)
	if err == nil {
		err = a.Run(ctx)
	}
	if err != nil {
		logger.Fatal("istiod-lite failed", zap.Error(err))
	}
	logger.Info("stopped")
}
