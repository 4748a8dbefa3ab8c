package cli

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind (servers
// not drained, connections not closed).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
