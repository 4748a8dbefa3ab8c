//go:build linux

package kernel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Probe checks every feature on this node (it needs CAP_BPF and, for TCX,
// CAP_NET_ADMIN; TCX is tried on the loopback interface, briefly).
func Probe() Result {
	r := Result{Failures: map[string]string{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Release = unix.ByteSliceToString(u.Release[:])
	}
	probes := map[string]func() error{
		"bpf":       func() error { return features.HaveProgramType(ebpf.SchedCLS) },
		"sockmap":   func() error { return features.HaveMapType(ebpf.SockMap) },
		"sk_assign": func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnSkAssign) },
		"sk_lookup": func() error { return features.HaveProgramType(ebpf.SkLookup) },
		"tcx":       probeTCX,
	}
	for _, f := range Features {
		if err := probes[f.Name](); err != nil {
			r.Missing = append(r.Missing, f.Name)
			r.Failures[f.Name] = err.Error()
		}
	}
	return r
}

// probeTCX attaches a pass-through tc program to lo's ingress with TCX and
// detaches it at once.
func probeTCX() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TC_ACT_UNSPEC
	})
	if err != nil {
		return fmt.Errorf("load a tc program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("TCX: %w", err)
		}
		return fmt.Errorf("attach with TCX to lo: %w", err)
	}
	return l.Close()
}
