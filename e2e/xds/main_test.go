//go:build e2e

package xds

import (
	"testing"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, framework.InstallMesh) }
