package nodelet

import (
	"path/filepath"
	"strings"
)

// BPFFSHostPath is the hostPath that maps to the node's own bpffs.
const BPFFSHostPath = "/sys/fs/bpf"

// realHostPaths are shared with the machine as they are (kernel interfaces).
var realHostPaths = []string{"/proc", "/sys", "/dev", "/lib/modules"}

// MapHostPath maps a hostPath volume's path to the directory used on this
// node: /sys/fs/bpf (and below) to the node's bpffs, kernel interfaces
// (/proc, /sys, /dev, /lib/modules) to themselves, anything else under the
// node's HostPathRoot. real reports a path shared with the machine, which
// the nodelet must never create.
func MapHostPath(n Node, path string) (mapped string, real bool) {
	p := filepath.Clean("/" + path)
	if rest, ok := under(p, BPFFSHostPath); ok && n.BPFFSPath != "" {
		return filepath.Join(n.BPFFSPath, rest), false
	}
	for _, r := range realHostPaths {
		if _, ok := under(p, r); ok {
			return p, true
		}
	}
	return filepath.Join(n.HostPathRoot, p), false
}

// under reports whether p is base or below it, and the rest.
func under(p, base string) (string, bool) {
	if p == base {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, base+"/"); ok {
		return rest, true
	}
	return "", false
}
