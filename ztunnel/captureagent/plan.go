package captureagent

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// State is the capture datapath's state, desired or actual.
type State struct {
	// Attached holds the interfaces (ifindex) the program is attached to.
	Attached map[int]bool
	// Enrolled maps an enrolled pod address to its host-side veth.
	Enrolled map[netip.Addr]int
}

// Target is one address of a (non-hostNetwork, non-terminal) pod of this node.
type Target struct {
	Namespace, Name string
	IP              netip.Addr
	// Ifindex is the pod's host-side veth, 0 when it could not be resolved.
	Ifindex int
	// Enroll is Enrolled(namespace, pod).
	Enroll bool
}

// Op is a datapath operation.
type Op int

// Operations, in the order Plan emits them: the program is attached before an
// address on that veth is enrolled, and an address is unenrolled before its
// veth is detached, so enrolled traffic is never half captured.
const (
	OpAttach Op = iota
	OpEnroll
	OpUnenroll
	OpDetach
)

func (o Op) String() string {
	switch o {
	case OpAttach:
		return "attach"
	case OpEnroll:
		return "enroll"
	case OpUnenroll:
		return "unenroll"
	case OpDetach:
		return "detach"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Action is one datapath change. Ifindex is unused by OpUnenroll, IP by
// OpAttach and OpDetach.
type Action struct {
	Op      Op
	Ifindex int
	IP      netip.Addr
}

func (a Action) String() string {
	switch a.Op {
	case OpAttach, OpDetach:
		return fmt.Sprintf("%s %d", a.Op, a.Ifindex)
	case OpUnenroll:
		return fmt.Sprintf("%s %s", a.Op, a.IP)
	}
	return fmt.Sprintf("%s %s@%d", a.Op, a.IP, a.Ifindex)
}

// Targets lists the addresses of the pods of node that capture must know
// about: every address of every pod on node that is neither hostNetwork nor
// terminal, with its host-side veth from resolve and its enrollment. Pods of
// other nodes are ignored. Addresses whose veth cannot be resolved get
// Ifindex 0; their errors are returned joined, with the targets.
func Targets(node string, pods []Pod, namespaces map[string]Namespace, resolve func(netip.Addr) (int, error)) ([]Target, error) {
	var out []Target
	var errs []error
	for _, p := range pods {
		if p.NodeName != node || p.HostNetwork || p.Terminal() {
			continue
		}
		enroll := Enrolled(namespaces[p.Namespace], p)
		for _, ip := range p.IPs {
			ifindex, err := resolve(ip)
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err))
				ifindex = 0
			}
			out = append(out, Target{Namespace: p.Namespace, Name: p.Name, IP: ip, Ifindex: ifindex, Enroll: enroll})
		}
	}
	return out, errors.Join(errs...)
}

// Desired computes the datapath state that targets and the uplink (ifindex,
// 0 when unknown) call for:
//   - the program is attached to the uplink and to every resolved pod veth,
//     enrolled or not (connections from non-enrolled local pods to enrolled
//     ones are captured on the client's veth);
//   - every address of an enrolled pod is enrolled with its veth; an enrolled
//     pod whose veth cannot be resolved right now keeps its actual entry (and
//     that veth stays attached): a failed lookup never unenrolls a pod.
//
// complete is false when something is unknown (the uplink or a pod's veth):
// the caller must then not detach interfaces that are not in the desired set,
// as one of them may be the unresolved one.
func Desired(targets []Target, uplink int, actual State) (desired State, complete bool) {
	desired = State{Attached: map[int]bool{}, Enrolled: map[netip.Addr]int{}}
	complete = uplink > 0
	if uplink > 0 {
		desired.Attached[uplink] = true
	}
	// Enrolling targets go last so that they win over a non-enrolling target
	// with the same address (a stale pod).
	sorted := slices.Clone(targets)
	slices.SortStableFunc(sorted, func(a, b Target) int {
		if a.Enroll == b.Enroll {
			return 0
		}
		if a.Enroll {
			return 1
		}
		return -1
	})
	for _, t := range sorted {
		if t.Ifindex > 0 {
			desired.Attached[t.Ifindex] = true
		} else {
			complete = false
		}
		if !t.Enroll {
			continue
		}
		switch ifindex, ok := actual.Enrolled[t.IP]; {
		case t.Ifindex > 0:
			desired.Enrolled[t.IP] = t.Ifindex
		case ok:
			desired.Enrolled[t.IP] = ifindex
			desired.Attached[ifindex] = true
		}
	}
	return desired, complete
}

// Diff lists the actions that turn actual into desired, in a fixed order:
// attaches, enrolls (new addresses and changed veths), unenrolls, detaches,
// each sorted. With reattach, every desired interface is attached again
// (Attach is idempotent and replaces a pinned link whose interface went away
// and whose index was reused, which the actual state cannot show). With
// keepAttached, nothing is detached.
func Diff(desired, actual State, reattach, keepAttached bool) []Action {
	var attach, enroll, unenroll, detach []Action
	for ifindex := range desired.Attached {
		if reattach || !actual.Attached[ifindex] {
			attach = append(attach, Action{Op: OpAttach, Ifindex: ifindex})
		}
	}
	for ip, ifindex := range desired.Enrolled {
		if have, ok := actual.Enrolled[ip]; !ok || have != ifindex {
			enroll = append(enroll, Action{Op: OpEnroll, Ifindex: ifindex, IP: ip})
		}
	}
	for ip := range actual.Enrolled {
		if _, ok := desired.Enrolled[ip]; !ok {
			unenroll = append(unenroll, Action{Op: OpUnenroll, IP: ip})
		}
	}
	if !keepAttached {
		for ifindex := range actual.Attached {
			if !desired.Attached[ifindex] {
				detach = append(detach, Action{Op: OpDetach, Ifindex: ifindex})
			}
		}
	}
	byIfindex := func(a, b Action) int { return cmp.Compare(a.Ifindex, b.Ifindex) }
	byIP := func(a, b Action) int { return a.IP.Compare(b.IP) }
	slices.SortFunc(attach, byIfindex)
	slices.SortFunc(enroll, byIP)
	slices.SortFunc(unenroll, byIP)
	slices.SortFunc(detach, byIfindex)
	return slices.Concat(attach, enroll, unenroll, detach)
}

// Plan is Desired followed by Diff: the actions that converge the datapath
// from actual to what targets and uplink call for.
func Plan(targets []Target, uplink int, actual State, reattach bool) (State, []Action) {
	desired, complete := Desired(targets, uplink, actual)
	return desired, Diff(desired, actual, reattach, !complete)
}
