// Package cli holds ambientctl's cobra commands: install/uninstall,
// dataplane, waypoint, ztunnel-config, proxy-status, check and version.
// Commands get their clients from an [Env], so tests run them against fake
// clientsets and Helm's in-memory storage.
package cli
