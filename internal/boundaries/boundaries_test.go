package boundaries

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ambient-mesh/ambient/"

// components are the top-level directories that must not import each other.
var components = []string{"ztunnel", "waypoint", "istiod-lite", "ctl"}

// area returns the layer a package belongs to: "pkg", a component name, or "".
func area(importPath string) string {
	rel, ok := strings.CutPrefix(importPath, module)
	if !ok {
		return ""
	}
	top, _, _ := strings.Cut(rel, "/")
	if top == "pkg" {
		return "pkg"
	}
	for _, c := range components {
		if top == c {
			return c
		}
	}
	return ""
}

// violation returns why pkg importing imp breaks the layering, or "".
func violation(pkg, imp string) string {
	from, to := area(pkg), area(imp)
	switch {
	case to == "" || from == "" || from == to:
		return ""
	case from == "pkg":
		return fmt.Sprintf("%s (pkg/) imports component package %s", pkg, imp)
	case to != "pkg":
		return fmt.Sprintf("component package %s imports another component's %s", pkg, imp)
	}
	return ""
}

func TestViolation(t *testing.T) {
	tests := []struct {
		pkg, imp string
		bad      bool
	}{
		{module + "pkg/hbone", module + "pkg/spiffe", false},
		{module + "pkg/hbone", module + "ztunnel/state", true},
		{module + "ztunnel/proxy", module + "pkg/hbone", false},
		{module + "ztunnel/proxy", module + "ztunnel/state", false},
		{module + "ztunnel/proxy", module + "istiod-lite/model", true},
		{module + "waypoint/router", module + "ztunnel/rbac", true},
		{module + "ctl/cmd", module + "istiod-lite/xds", true},
		{module + "e2e/framework", module + "ztunnel/state", false},
		{module + "istiod-lite/model", "google.golang.org/protobuf/proto", false},
	}
	for _, tt := range tests {
		if got := violation(tt.pkg, tt.imp) != ""; got != tt.bad {
			t.Errorf("violation(%s, %s) = %v, want %v", tt.pkg, tt.imp, got, tt.bad)
		}
	}
}

// TestImportBoundaries checks every package of the module, tests included,
// and that every package says what it is for in a package doc comment.
func TestImportBoundaries(t *testing.T) {
	cmd := exec.Command("go", "list", "-tags", "e2e", "-json=ImportPath,Doc,Imports,TestImports,XTestImports", module[:len(module)-1]+"/...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	n := 0
	for {
		var p struct {
			ImportPath, Doc                    string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		if p.Doc == "" {
			t.Errorf("package %s has no package doc comment (add a doc.go)", p.ImportPath)
		}
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if v := violation(p.ImportPath, imp); v != "" {
				t.Error(v)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	if n < 5 {
		t.Fatalf("go list found only %d packages; the test is not looking at the module", n)
	}
}
