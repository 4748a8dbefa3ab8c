package kernel

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestExitCodeRoundTrip(t *testing.T) {
	tests := []struct {
		missing []string
		code    int
	}{
		{nil, 0},
		{[]string{"tcx"}, 64 + 16},
		{[]string{"bpf", "sockmap", "sk_assign", "sk_lookup", "tcx"}, 64 + 31},
		{[]string{"sk_assign", "unknown"}, 64 + 4},
	}
	for _, tt := range tests {
		code := ExitCode(tt.missing)
		if code != tt.code {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.missing, code, tt.code)
		}
		got, ok := Missing(code)
		if !ok {
			t.Fatalf("Missing(%d) not ok", code)
		}
		var names []string
		for _, f := range got {
			names = append(names, f.Name)
		}
		var want []string
		for _, m := range tt.missing {
			if m != "unknown" {
				want = append(want, m)
			}
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("Missing(%d) = %v, want %v", code, names, want)
		}
	}
	for _, code := range []int{1, 2, 64, 96, 137, 255} {
		if _, ok := Missing(code); ok {
			t.Errorf("Missing(%d) accepted a code the probe never gives", code)
		}
	}
	if d := Describe([]Feature{Features[4]}); !strings.Contains(d, "tcx (TCX attachment (Linux 6.6+))") {
		t.Errorf("Describe = %q", d)
	}
}

// TestProbe runs the real probe; as root on a kernel with TCX every feature
// the basics must be found; the newer features are
// logged (they depend on the kernel version).
func TestProbe(t *testing.T) {
	r := Probe()
	if len(r.Missing) != len(r.Failures) {
		t.Errorf("missing %v but failures %v", r.Missing, r.Failures)
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skipf("not root on Linux: missing %v", r.Missing)
	}
	if r.Release == "" {
		t.Error("no kernel release")
	}
	for _, m := range r.Missing {
		if m == "bpf" || m == "sockmap" { // any kernel of the last years has these
			t.Errorf("kernel %s: %s reported missing as root: %s", r.Release, m, r.Failures[m])
		}
	}
	t.Logf("kernel %s, missing %v %v", r.Release, r.Missing, r.Failures)
}
