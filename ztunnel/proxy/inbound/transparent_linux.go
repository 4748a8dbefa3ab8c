package inbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TransparentDialer returns a DialFunc that connects from the client's pod
// IP (IP_TRANSPARENT, so a non-local address can be bound; with
// IP_BIND_ADDRESS_NO_PORT the port is chosen at connect time), so the pod
// sees its real peer. It needs CAP_NET_ADMIN and routing that brings the
// answers back to this node (the capture layer's job). Use it when the
// source is on another node; for a same-node source the default dial is
// used.
func TransparentDialer() DialFunc {
	return func(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
		if !src.IsValid() {
			return PlainDial(ctx, src, dst)
		}
		d := net.Dialer{
			Timeout:   10 * time.Second,
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			Control:   transparentControl(src),
		}
		c, err := d.DialContext(ctx, "tcp", dst.String())
		if err != nil {
			return nil, fmt.Errorf("transparent dial from %s: %w", src, err)
		}
		return c, nil
	}
}

func transparentControl(src netip.Addr) func(network, address string, rc syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if src.Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				if serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				}
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
				if serr == nil {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				}
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("IP_TRANSPARENT (needs CAP_NET_ADMIN): %w", serr)
		}
		return nil
	}
}
