// Package procs starts the local cluster's long-running processes detached
// from the caller (own session, output to a log file, a pid file), and finds
// and stops them again — also after a crash, by the marker variable every
// process of the cluster carries in its environment.
package procs
