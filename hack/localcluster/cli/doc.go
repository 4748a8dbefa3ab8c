// Package cli is the localcluster command line: up, down, status, kubeconfig,
// and the internal daemon, run-container and exec-container subcommands.
package cli
