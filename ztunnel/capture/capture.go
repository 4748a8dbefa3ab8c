//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Options configures [Load].
type Options struct {
	// PinDir is a directory on a bpffs where maps and links are pinned.
	// Default DefaultPinDir.
	PinDir string
	// Logger receives the few events worth keeping (stale link pins removed,
	// programs replaced). Default: no logging.
	Logger *zap.Logger
}

// Objects is the capture agent's handle on the loaded program and its pinned
// maps and links. Methods are safe for concurrent use.
type Objects struct {
	pinDir string
	log    *zap.Logger

	mu      sync.Mutex // serialises attach and detach
	objs    captureObjects
	sockmap *Sockmap
}

// Load loads the capture program and its maps, pinning the maps under
// opts.PinDir. Maps pinned by an earlier run are reused, so enrolled pods and
// registered listeners survive restarts; links pinned by an earlier run (TCX,
// sk_lookup) are switched atomically to the newly loaded programs (links of
// interfaces that no longer exist are removed). Needs CAP_BPF, CAP_PERFMON and
// CAP_NET_ADMIN.
func Load(opts Options) (*Objects, error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := checkBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.PinDir, linksDir), 0o700); err != nil {
		return nil, fmt.Errorf("load capture: %w", err)
	}
	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("load capture: %w", err)
	}
	for _, m := range spec.Maps {
		// Only the named maps: pinning .rodata/.bss fails and is not needed.
		switch m.Name {
		case captureMapEnrolled, captureMapListeners, captureMapStats:
			m.Pinning = ebpf.PinByName
		}
	}
	o := &Objects{pinDir: opts.PinDir, log: opts.Logger}
	err = spec.LoadAndAssign(&o.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinDir}})
	if err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load capture: pinned maps in %s come from an incompatible version (run Uninstall first): %w", opts.PinDir, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// %+v of the error prints the whole verifier log.
			return nil, fmt.Errorf("load capture: verifier rejected the program (the loader needs CAP_PERFMON as well as CAP_BPF): %w", err)
		}
		return nil, fmt.Errorf("load capture: %w", featureErr(err))
	}
	o.sockmap = &Sockmap{m: o.objs.Listeners}
	if err := o.adoptLinks(); err != nil {
		o.objs.Close()
		return nil, err
	}
	return o, nil
}

// PinDir is the directory the objects are pinned in.
func (o *Objects) PinDir() string { return o.pinDir }

// Close releases the file descriptors. Pinned maps and links stay: capture
// keeps working without the agent process.
func (o *Objects) Close() error {
	return o.objs.Close()
}

// Enroll marks podIP as an enrolled pod whose packets come from the host-side
// veth ifindex. From then on the pod's new TCP connections, and new
// connections to it, are captured wherever the program is attached. Enrolling
// again updates the interface.
func (o *Objects) Enroll(ifindex int, podIP netip.Addr) error {
	key, err := podKey(podIP)
	if err != nil {
		return fmt.Errorf("enroll %s: %w", podIP, err)
	}
	if ifindex <= 0 {
		return fmt.Errorf("enroll %s: invalid ifindex %d", podIP, ifindex)
	}
	val := captureEnrolledPod{Ifindex: uint32(ifindex)}
	if err := o.objs.Enrolled.Update(key, val, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("enroll %s on ifindex %d: %w", podIP, ifindex, err)
	}
	return nil
}

// Unenroll removes podIP from the enrolled pods. Connections that were captured
// keep going to the proxy while the program stays attached on the pod's veth.
// Unenrolling an address that is not enrolled is a no-op.
func (o *Objects) Unenroll(podIP netip.Addr) error {
	key, err := podKey(podIP)
	if err != nil {
		return fmt.Errorf("unenroll %s: %w", podIP, err)
	}
	if err := o.objs.Enrolled.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unenroll %s: %w", podIP, err)
	}
	return nil
}

// Enrolled returns the enrolled pod addresses and their veth ifindex, for a
// level-based reconcile against the pods that should be enrolled.
func (o *Objects) Enrolled() (map[netip.Addr]int, error) {
	out := make(map[netip.Addr]int)
	var key [16]byte
	var val captureEnrolledPod
	it := o.objs.Enrolled.Iterate()
	for it.Next(&key, &val) {
		out[netip.AddrFrom16(key).Unmap()] = int(val.Ifindex)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list enrolled pods: %w", err)
	}
	return out, nil
}

// AttachPod attaches the program to the pod's host-side veth and enrolls the
// pod's address.
func (o *Objects) AttachPod(ifindex int, podIP netip.Addr) error {
	if err := o.Attach(ifindex); err != nil {
		return err
	}
	return o.Enroll(ifindex, podIP)
}

// DetachPod unenrolls the pod's address and detaches the program from its
// veth. An agent that also captures traffic from non-enrolled local pods to
// enrolled ones keeps the program attached and calls only [Objects.Unenroll].
func (o *Objects) DetachPod(ifindex int, podIP netip.Addr) error {
	if err := o.Unenroll(podIP); err != nil {
		return err
	}
	return o.Detach(ifindex)
}

// AttachUplink attaches the program to the node's uplink, where SYNs from other
// nodes to enrolled pods (HBONE 15008 and plaintext) are captured.
func (o *Objects) AttachUplink(ifindex int) error {
	return o.Attach(ifindex)
}

// Stats are the program's counters, summed over CPUs.
type Stats struct {
	AssignedEstablished  uint64 // packets of existing flows assigned to their socket
	AssignedOutbound     uint64 // SYNs assigned to the outbound listener
	AssignedInboundPlain uint64 // SYNs assigned to the plaintext inbound listener
	AssignedHBONE        uint64 // SYNs assigned to the HBONE listener
	NoListener           uint64 // SYNs dropped because the listener was not registered
	AssignFailed         uint64 // packets dropped because bpf_sk_assign failed
	Spoofed              uint64 // packets dropped: enrolled source IP on a foreign interface
	Unparsed             uint64 // packets to/from enrolled pods dropped: fragments, IPv6 extension headers, truncated TCP
	// SYNs assigned by the sk_lookup program: those reusing the addresses of a
	// TIME_WAIT socket, and (same choice again) every SYN assigned to a listener.
	LookupAssigned uint64
}

// Stats reads the program's counters.
func (o *Objects) Stats() (Stats, error) {
	var s Stats
	fields := map[captureStat]*uint64{
		captureStatSTAT_ASSIGN_ESTABLISHED:   &s.AssignedEstablished,
		captureStatSTAT_ASSIGN_OUTBOUND:      &s.AssignedOutbound,
		captureStatSTAT_ASSIGN_INBOUND_PLAIN: &s.AssignedInboundPlain,
		captureStatSTAT_ASSIGN_HBONE:         &s.AssignedHBONE,
		captureStatSTAT_NO_LISTENER:          &s.NoListener,
		captureStatSTAT_ASSIGN_FAILED:        &s.AssignFailed,
		captureStatSTAT_SPOOFED:              &s.Spoofed,
		captureStatSTAT_UNPARSED:             &s.Unparsed,
		captureStatSTAT_LOOKUP_ASSIGNED:      &s.LookupAssigned,
	}
	for k, dst := range fields {
		var perCPU []uint64
		if err := o.objs.Stats.Lookup(k, &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read capture stats: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return s, nil
}

// podKey is the enrolled map key of addr (struct pod_addr): the IPv6
// address, or the IPv4-mapped IPv6 address, in network order.
func podKey(addr netip.Addr) ([16]byte, error) {
	if !addr.IsValid() || addr.Zone() != "" {
		return [16]byte{}, ErrInvalidAddress
	}
	return addr.As16(), nil
}

// checkBPFFS checks that dir, or its nearest existing ancestor, is on a bpffs.
func checkBPFFS(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if errors.Is(err, unix.ENOENT) && p != filepath.Dir(p) {
			continue
		}
		if err != nil {
			return fmt.Errorf("statfs %s: %w", p, err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			return fmt.Errorf("%s (mount one: mount -t bpf bpf /sys/fs/bpf): %w", dir, ErrNoBPFFS)
		}
		return nil
	}
}

// Sockmap is the listeners SOCKMAP, for a process that is agent and proxy at
// once. It is closed by [Objects.Close].
func (o *Objects) Sockmap() *Sockmap { return o.sockmap }

// RegisterListener registers a capture listener; see [Sockmap.Register].
func (o *Objects) RegisterListener(kind ListenerKind, ln syscall.Conn) error {
	return o.sockmap.Register(kind, ln)
}

// UnregisterListener empties a listener slot; see [Sockmap.Unregister].
func (o *Objects) UnregisterListener(kind ListenerKind) error {
	return o.sockmap.Unregister(kind)
}
