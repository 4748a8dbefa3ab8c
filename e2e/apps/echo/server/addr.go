package server

import (
	"net"
	"strconv"
)

// splitAddr returns the IP and port of a "host:port" address; zero values
// when it cannot be parsed (e.g. a unix socket).
func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return host, 0
	}
	return host, p
}

// addrPort returns the port of a net.Addr, 0 when unknown.
func addrPort(a net.Addr) int {
	if a == nil {
		return 0
	}
	_, p := splitAddr(a.String())
	return p
}
