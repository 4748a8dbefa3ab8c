//go:build linux

package capture

import "fmt"

// ListenerKind selects one of ztunnel's capture listeners (a SOCKMAP slot).
type ListenerKind uint32

// The capture listeners; values are the SOCKMAP keys used by bpf/capture.c.
const (
	Outbound     = ListenerKind(captureListenerKindLISTENER_OUTBOUND)      // 15001: SYNs from enrolled pods
	InboundPlain = ListenerKind(captureListenerKindLISTENER_INBOUND_PLAIN) // 15006: plaintext SYNs to enrolled pods
	HBONE        = ListenerKind(captureListenerKindLISTENER_HBONE)         // 15008: SYNs to enrolled pods' port 15008
)

// ListenerKinds lists every capture listener.
var ListenerKinds = []ListenerKind{Outbound, InboundPlain, HBONE}

// String returns the listener's name.
func (k ListenerKind) String() string {
	switch k {
	case Outbound:
		return "outbound"
	case InboundPlain:
		return "inbound-plaintext"
	case HBONE:
		return "hbone"
	}
	return fmt.Sprintf("ListenerKind(%d)", uint32(k))
}

// Port is ztunnel's conventional port for the listener (DESIGN.md). The
// program does not depend on it: assignment ignores the listener's address.
func (k ListenerKind) Port() int {
	switch k {
	case Outbound:
		return 15001
	case InboundPlain:
		return 15006
	case HBONE:
		return 15008
	}
	return 0
}

func (k ListenerKind) valid() bool { return k < ListenerKind(captureListenerKindLISTENER_MAX) }

// slot is the SOCKMAP index of the listener of kind k for one address family.
func (k ListenerKind) slot(ipv6 bool) uint32 {
	if ipv6 {
		return uint32(k) + uint32(captureListenerKindLISTENER_MAX)
	}
	return uint32(k)
}
