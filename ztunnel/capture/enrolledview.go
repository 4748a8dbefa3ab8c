//go:build linux

package capture

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// enrolledPin is the pinned map of enrolled pod addresses (bpf/capture.c).
const enrolledPin = "enrolled"

// EnrolledView is a read-only view of the pinned map of enrolled pod
// addresses, for the proxy role: a connection it opens to an enrolled pod on
// this node must be delivered to its own HBONE listener (see [MarkCaptured]),
// because the pod's veth only captures what the pod sends.
type EnrolledView struct{ m *ebpf.Map }

// OpenEnrolled opens the enrolled-address map pinned by the capture agent.
func OpenEnrolled(pinDir string) (*EnrolledView, error) {
	path := filepath.Join(pinDir, enrolledPin)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open enrolled-pod map %s (is the capture agent running?): %w", path, err)
	}
	return &EnrolledView{m: m}, nil
}

// Enrolled reports whether ip is an enrolled pod of this node.
func (v *EnrolledView) Enrolled(ip netip.Addr) bool {
	key := ip.As16()
	var val captureEnrolledPod
	return v.m.Lookup(&key, &val) == nil
}

// Close releases the map.
func (v *EnrolledView) Close() error { return v.m.Close() }

// MarkCaptured is a net.Dialer Control function that marks the socket with
// [CaptureMark]: the node's policy route (see [NodeRouting]) then delivers its
// packets locally, so a connection to an enrolled pod's HBONE port on this node
// reaches ztunnel's own transparent HBONE listener instead of the pod. Needs
// CAP_NET_ADMIN.
func MarkCaptured(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, CaptureMark)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_MARK %#x: %w", CaptureMark, serr)
	}
	return nil
}
