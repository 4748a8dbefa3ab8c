// Package statetest loads the golden outputs of istiod-lite's waypoint xDS
// translation (read from disk, so the waypoint does not import istiod-lite)
// as waypoint resources for tests, and rewrites their endpoint addresses to
// loopback test servers.
package statetest
