package kernel

import (
	"fmt"
	"strings"
)

// Feature is one kernel feature capture needs.
type Feature struct {
	Bit  int    // its bit in the exit code
	Name string // short name
	Why  string // what capture uses it for
}

// Features capture needs, in probe order.
var Features = []Feature{
	{1, "bpf", "the bpf() syscall and tc (SCHED_CLS) programs"},
	{2, "sockmap", "SOCKMAP, where ztunnel registers its listeners"},
	{4, "sk_assign", "the bpf_sk_assign helper in tc programs (Linux 5.7+)"},
	{8, "sk_lookup", "sk_lookup programs (Linux 5.9+)"},
	{16, "tcx", "TCX attachment (Linux 6.6+)"},
}

// exitBase is added to the missing-feature mask, so a crash (1, 2) or a
// signal (128+) is not read as a result.
const exitBase = 64

// ExitCode encodes the set of missing features: 0 when nothing is missing.
func ExitCode(missing []string) int {
	mask := 0
	for _, m := range missing {
		for _, f := range Features {
			if f.Name == m {
				mask |= f.Bit
			}
		}
	}
	if mask == 0 {
		return 0
	}
	return exitBase + mask
}

// Missing decodes an exit code of the probe. ok is false when the code is
// not one the probe gives (it crashed or was killed).
func Missing(code int) (missing []Feature, ok bool) {
	if code == 0 {
		return nil, true
	}
	mask := code - exitBase
	if mask <= 0 || mask >= 32 {
		return nil, false
	}
	for _, f := range Features {
		if mask&f.Bit != 0 {
			missing = append(missing, f)
		}
	}
	return missing, true
}

// Describe is one line naming missing features and what they are for.
func Describe(missing []Feature) string {
	var parts []string
	for _, f := range missing {
		parts = append(parts, fmt.Sprintf("%s (%s)", f.Name, f.Why))
	}
	return strings.Join(parts, ", ")
}

// Result is the probe's report on one node.
type Result struct {
	Release  string            `json:"kernel"`
	Missing  []string          `json:"missing"`
	Failures map[string]string `json:"errors,omitempty"`
}
