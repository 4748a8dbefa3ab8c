package main

import (
	"os/exec"
	"strings"
	"testing"
)

// Packages ztunnel must not link: the generated clientsets and informers
// (their scheme packages register every API group at start), the Istio and
// Gateway API clients, and the apiextensions and Helm libraries of the
// control plane and CLI. Linked, they made the binary ~70 MB and most of its
// ~40 MiB idle RSS was their file-backed pages (issue #5). The capture role
// reads Pods and Namespaces through pkg/kube/corev1client.
var (
	// heavyExact: these packages (pkg/kube's light subpackages are fine).
	heavyExact = []string{"github.com/ambient-mesh/ambient/pkg/kube"}
	// heavyTrees: these packages and everything under them.
	heavyTrees = []string{
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
		"k8s.io/client-go/applyconfigurations",
		"istio.io/client-go",
		"sigs.k8s.io/gateway-api",
		"k8s.io/apiextensions-apiserver",
		"helm.sh/helm",
	}
)

// forbidden reports whether ztunnel must not link package dep.
func forbidden(dep string) bool {
	for _, h := range heavyExact {
		if dep == h {
			return true
		}
	}
	for _, h := range heavyTrees {
		if dep == h || strings.HasPrefix(dep, h+"/") {
			return true
		}
	}
	return false
}

func TestForbidden(t *testing.T) {
	for dep, want := range map[string]bool{
		"k8s.io/client-go/kubernetes":                            true,
		"k8s.io/client-go/kubernetes/scheme":                     true,
		"k8s.io/client-go/kubernetes/typed/core/v1":              true,
		"k8s.io/client-go/informers/core/v1":                     true,
		"istio.io/client-go/pkg/clientset/versioned":             true,
		"sigs.k8s.io/gateway-api/pkg/client/clientset/versioned": true,
		"github.com/ambient-mesh/ambient/pkg/kube":               true,
		"github.com/ambient-mesh/ambient/pkg/kube/restconfig":    false,
		"k8s.io/client-go/rest":                                  false,
		"k8s.io/client-go/tools/cache":                           false,
		"k8s.io/api/core/v1":                                     false,
		"istio.io/istio/pkg/workloadapi":                         false,
	} {
		if got := forbidden(dep); got != want {
			t.Errorf("forbidden(%s) = %v, want %v", dep, got, want)
		}
	}
}

// TestNoHeavyDependencies lists what the ztunnel binary links.
func TestNoHeavyDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps found only %d packages", len(deps))
	}
	for _, d := range deps {
		if forbidden(d) {
			t.Errorf("ztunnel links %s; use pkg/kube/restconfig and pkg/kube/corev1client (see heavy)", d)
		}
	}
}
