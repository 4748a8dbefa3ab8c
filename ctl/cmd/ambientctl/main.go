// Command ambientctl installs and operates the ambient mesh: install,
// dataplane enroll, waypoint, ztunnel-config, proxy-status, check, version.
package main

import (
	"os"

	"github.com/ambient-mesh/ambient/ctl/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
