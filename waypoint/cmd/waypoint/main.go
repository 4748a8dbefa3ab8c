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

	"github.com/ambient-mesh/ambient/pkg/log"
	"github.com/ambient-mesh/ambient/waypoint/app"
	"github.com/ambient-mesh/ambient/waypoint/config"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	var lg *log.Logger
	if err == nil {
		lg, err = log.New(log.Options{Level: cfg.LogLevel, JSON: cfg.LogJSON, Component: "waypoint"})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "waypoint: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	a, err := app.New(cfg, lg.Logger, lg.Level)
	if err == nil {
		err = a.Run(ctx)
	}
	if err != nil {
		lg.Fatal("waypoint failed", zap.Error(err))
	}
}
