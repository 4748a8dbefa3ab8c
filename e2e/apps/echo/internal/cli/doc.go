// Package cli is the command line of the echo test app: "echo server"
// (also the default) and "echo client". It turns flags and environment
// into the configs of packages server and client, opens the listeners,
// and maps results to the process exit code.
package cli
