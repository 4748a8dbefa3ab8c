// Package router turns the RouteConfiguration a waypoint receives over xDS
// into an immutable, precompiled match table, and answers which route a
// request takes: virtual host by authority, then the first matching route.
// A Route exposes everything the proxy needs to act on it — cluster choice,
// redirect, rewrites, header mutations, timeouts, retries, fault injection,
// direct responses and RBAC overrides (subpackage authz evaluates those).
//
// Compile is strict: a field it does not implement is an error naming that
// field, so the waypoint NACKs instead of silently routing differently.
// Both ends are kept in agreement by agreement_test.go, which compiles the
// golden outputs of istiod-lite/waypointxds read from disk.
package router
