// Package conntrack keeps the set of connections a ztunnel is relaying: what
// the admin server shows under "connections" in /config_dump, what a
// graceful shutdown waits for and, past its deadline, closes. Ending a
// connection writes its access log line and closes its metrics.
package conntrack
