// Command echo is the test workload of the ambient mesh: "echo server"
// (the default) answers TCP, HTTP/1.1, h2c, HTTPS and gRPC with the pod's
// identity; "echo client" sends requests and prints one JSON summary. See
// README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := cli.Main(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
