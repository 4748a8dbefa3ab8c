//go:build linux

package capture

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sockmap is the pinned SOCKMAP holding ztunnel's capture listeners. The proxy
// role opens it with [Open]; it needs no other BPF object.
type Sockmap struct {
	m *ebpf.Map
}

// Open opens the SOCKMAP pinned by the capture agent under pinDir.
func Open(pinDir string) (*Sockmap, error) {
	path := filepath.Join(pinDir, sockmapPin)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open capture sockmap %s (is the capture agent running?): %w", path, err)
	}
	if m.Type() != ebpf.SockMap {
		m.Close()
		return nil, fmt.Errorf("open capture sockmap %s: map type %s, want SockMap", path, m.Type())
	}
	return &Sockmap{m: m}, nil
}

// Register puts the listening socket ln (from [ListenTransparent]) in the slot
// of kind for the listener's address family: IPv4 and IPv6 connections need a
// listener each. It replaces an earlier registration. The kernel removes the socket
// from the map when it is closed, after which captured SYNs of that kind are
// dropped until a listener is registered again.
func (s *Sockmap) Register(kind ListenerKind, ln syscall.Conn) error {
	if !kind.valid() {
		return fmt.Errorf("register %s listener: invalid kind", kind)
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("register %s listener: %w", kind, err)
	}
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		if sa, uerr = unix.Getsockname(int(fd)); uerr != nil {
			uerr = fmt.Errorf("getsockname: %w", uerr)
			return
		}
		_, ipv6 := sa.(*unix.SockaddrInet6)
		uerr = s.m.Update(kind.slot(ipv6), uint64(fd), ebpf.UpdateAny)
	}); err != nil {
		return fmt.Errorf("register %s listener: %w", kind, err)
	}
	if uerr != nil {
		if errors.Is(uerr, unix.EOPNOTSUPP) {
			return fmt.Errorf("register %s listener: socket not accepted by SOCKMAP (it must be a plain TCP listener, not MPTCP: use ListenTransparent): %w", kind, uerr)
		}
		return fmt.Errorf("register %s listener: %w", kind, uerr)
	}
	return nil
}

// Unregister empties the slots of kind (both address families). Captured SYNs
// of that kind are dropped until a listener is registered again.
// Unregistering an empty slot is a no-op.
func (s *Sockmap) Unregister(kind ListenerKind) error {
	if !kind.valid() {
		return fmt.Errorf("unregister %s listener: invalid kind", kind)
	}
	for _, ipv6 := range []bool{false, true} {
		// A SOCKMAP reports an empty slot as EINVAL (the key is valid: checked above).
		err := s.m.Delete(kind.slot(ipv6))
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unregister %s listener: %w", kind, err)
		}
	}
	return nil
}

// Registered reports whether a listener of kind is registered for the family.
func (s *Sockmap) Registered(kind ListenerKind, ipv6 bool) bool {
	var cookie uint64
	return kind.valid() && s.m.Lookup(kind.slot(ipv6), &cookie) == nil
}

// Close releases the map's file descriptor; registrations stay in place.
func (s *Sockmap) Close() error {
	return s.m.Close()
}
