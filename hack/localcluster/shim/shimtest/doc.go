// Package shimtest holds helpers for tests that run containers through the
// shim: Dispatch lets a test binary act as the shim (call it from
// TestMain), and NewNetns creates a throw-away network namespace. Both need
// root.
package shimtest
