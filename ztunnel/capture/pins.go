package capture

import (
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultPinDir is where the capture agent pins its maps and links. It is
// shared with the proxy container (hostPath /sys/fs/bpf).
const DefaultPinDir = "/sys/fs/bpf/ambient/capture"

const (
	linksDir      = "links"
	linkPinPrefix = "tcx-ingress-"
	lookupPin     = "sk-lookup" // the sk_lookup link of the node netns
	sockmapPin    = "listeners" // name of the SOCKMAP in bpf/capture.c
)

// linkPinPath is where the TCX ingress link of interface ifindex is pinned.
func linkPinPath(pinDir string, ifindex int) string {
	return filepath.Join(pinDir, linksDir, linkPinPrefix+strconv.Itoa(ifindex))
}

// parseLinkPin returns the interface index encoded in a link pin's file name.
func parseLinkPin(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, linkPinPrefix)
	if !ok {
		return 0, false
	}
	ifindex, err := strconv.Atoi(s)
	if err != nil || ifindex <= 0 || strconv.Itoa(ifindex) != s {
		return 0, false
	}
	return ifindex, true
}
