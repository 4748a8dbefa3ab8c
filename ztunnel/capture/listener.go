//go:build linux

package capture

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenTransparent listens on addr ("ip:port"; IPv4 unless ip is an IPv6
// address) with IP_TRANSPARENT (IPV6_TRANSPARENT), as a capture listener must:
// connections assigned to it carry foreign destination addresses. Register one
// listener per address family in use. MPTCP, which Go 1.24+ enables by default for listeners, is turned
// off because a SOCKMAP rejects MPTCP sockets. The listener's address does not
// matter to capture (the program assigns to the socket, not to an address);
// conventionally it is 127.0.0.1:<kind.Port()>.
func ListenTransparent(ctx context.Context, addr string) (*net.TCPListener, error) {
	network := "tcp4"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
			network = "tcp6"
		}
	}
	lc := net.ListenConfig{Control: setTransparent}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen transparent %s (needs CAP_NET_ADMIN): %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}

// setTransparent sets IP_TRANSPARENT, or IPV6_TRANSPARENT on "tcp6" sockets.
func setTransparent(network, _ string, c syscall.RawConn) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if network == "tcp6" {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt transparent (%s): %w", network, serr)
	}
	return nil
}

// OriginalDst returns the destination the client connected to, for a
// connection accepted on a capture listener. With bpf_sk_assign the packets
// keep their destination, so it is the socket's local address (getsockname).
func OriginalDst(conn net.Conn) (netip.AddrPort, error) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T is not a TCP connection", conn)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: getsockname: %w", serr)
	}
	return sockaddrAddrPort(sa)
}

func sockaddrAddrPort(sa unix.Sockaddr) (netip.AddrPort, error) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("original destination: unexpected socket address %T", sa)
}
