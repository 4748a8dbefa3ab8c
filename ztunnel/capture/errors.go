//go:build linux

package capture

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

var (
	// ErrNotSupported is returned when the kernel lacks a feature capture needs
	// (TCX, bpf_sk_assign, SOCKMAP lookups from tc, BTF).
	ErrNotSupported = errors.New("capture: kernel feature not supported")
	// ErrNoBPFFS is returned when the pin directory is not on a bpf filesystem.
	ErrNoBPFFS = errors.New("capture: pin directory is not on a bpf filesystem")
	// ErrInvalidAddress is returned for a pod address that is not a valid
	// IPv4 or IPv6 address.
	ErrInvalidAddress = errors.New("capture: invalid pod address")
)

// featureErr adds ErrNotSupported to err when cilium/ebpf reports a missing
// kernel feature, keeping the original error in the chain.
func featureErr(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}
