package captureagent

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
)

var (
	ipA = netip.MustParseAddr("10.0.0.2")
	ipB = netip.MustParseAddr("10.0.0.3")
	ipC = netip.MustParseAddr("10.0.0.4")
	ip6 = netip.MustParseAddr("fd00::2")
)

func state(attached []int, enrolled map[netip.Addr]int) State {
	s := State{Attached: map[int]bool{}, Enrolled: map[netip.Addr]int{}}
	for _, i := range attached {
		s.Attached[i] = true
	}
	for k, v := range enrolled {
		s.Enrolled[k] = v
	}
	return s
}

func target(ip netip.Addr, ifindex int, enroll bool) Target {
	return Target{Namespace: "ns", Name: ip.String(), IP: ip, Ifindex: ifindex, Enroll: enroll}
}

func attachOp(i int) Action                { return Action{Op: OpAttach, Ifindex: i} }
func detachOp(i int) Action                { return Action{Op: OpDetach, Ifindex: i} }
func enrollOp(ip netip.Addr, i int) Action { return Action{Op: OpEnroll, Ifindex: i, IP: ip} }
func unenrollOp(ip netip.Addr) Action      { return Action{Op: OpUnenroll, IP: ip} }

func TestPlan(t *testing.T) {
	const uplink = 2
	for _, tc := range []struct {
		name     string
		targets  []Target
		uplink   int
		actual   State
		reattach bool
		want     []Action
	}{
		{
			name:    "fresh node: attach uplink and every pod veth, enroll enrolled pods",
			targets: []Target{target(ipA, 10, true), target(ipB, 11, false)},
			uplink:  uplink,
			actual:  state(nil, nil),
			want:    []Action{attachOp(2), attachOp(10), attachOp(11), enrollOp(ipA, 10)},
		},
		{
			name:    "converged: nothing to do",
			targets: []Target{target(ipA, 10, true), target(ipB, 11, false)},
			uplink:  uplink,
			actual:  state([]int{2, 10, 11}, map[netip.Addr]int{ipA: 10}),
			want:    nil,
		},
		{
			name:     "reattach re-asserts every desired interface only",
			targets:  []Target{target(ipA, 10, true)},
			uplink:   uplink,
			actual:   state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			reattach: true,
			want:     []Action{attachOp(2), attachOp(10)},
		},
		{
			name:    "unlabelled: unenroll, keep the veth attached",
			targets: []Target{target(ipA, 10, false)},
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{unenrollOp(ipA)},
		},
		{
			name:    "pod deleted: unenroll then detach",
			targets: nil,
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{unenrollOp(ipA), detachOp(10)},
		},
		{
			name:    "veth changed (pod recreated with the same IP): attach new, re-enroll, detach old",
			targets: []Target{target(ipA, 12, true)},
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{attachOp(12), enrollOp(ipA, 12), detachOp(10)},
		},
		{
			name:    "drift: missing enrollment and missing attachment repaired",
			targets: []Target{target(ipA, 10, true), target(ipB, 11, true)},
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{attachOp(11), enrollOp(ipB, 11)},
		},
		{
			name:    "stray enrollment of an unknown IP removed",
			targets: []Target{target(ipA, 10, true)},
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10, ipC: 10}),
			want:    []Action{unenrollOp(ipC)},
		},
		{
			name:    "dual stack pod: both addresses",
			targets: []Target{target(ipA, 10, true), target(ip6, 10, true)},
			uplink:  uplink,
			actual:  state([]int{2}, nil),
			want:    []Action{attachOp(10), enrollOp(ipA, 10), enrollOp(ip6, 10)},
		},
		{
			name:    "unresolved enrolled pod keeps its entry and veth, nothing detached",
			targets: []Target{target(ipA, 0, true), target(ipB, 11, true)},
			uplink:  uplink,
			actual:  state([]int{2, 10, 99}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{attachOp(11), enrollOp(ipB, 11)},
		},
		{
			name:    "unresolved new pod: not enrolled yet, stale veth kept until resolved",
			targets: []Target{target(ipA, 0, true)},
			uplink:  uplink,
			actual:  state([]int{2, 99}, nil),
			want:    nil,
		},
		{
			name:    "unresolved non-enrolled pod is still unenrolled",
			targets: []Target{target(ipA, 0, false)},
			uplink:  uplink,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    []Action{unenrollOp(ipA)},
		},
		{
			name:    "unknown uplink: no detach",
			targets: []Target{target(ipA, 10, true)},
			uplink:  0,
			actual:  state([]int{2, 10}, map[netip.Addr]int{ipA: 10}),
			want:    nil,
		},
		{
			name:    "uplink moved: attach new, detach old",
			targets: nil,
			uplink:  3,
			actual:  state([]int{2}, nil),
			want:    []Action{attachOp(3), detachOp(2)},
		},
		{
			name:    "same IP on a stale and a live pod: enrolling one wins",
			targets: []Target{target(ipA, 10, true), target(ipA, 10, false)},
			uplink:  uplink,
			actual:  state([]int{2}, nil),
			want:    []Action{attachOp(10), enrollOp(ipA, 10)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := Plan(tc.targets, tc.uplink, tc.actual, tc.reattach)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan =\n  %v\nwant\n  %v", got, tc.want)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	namespaces := map[string]Namespace{"app": ambientNS, "other": plainNS}
	errNoRoute := errors.New("no route")
	veths := map[netip.Addr]int{ipA: 10, ipB: 11, ip6: 10}
	resolve := func(ip netip.Addr) (int, error) {
		if i, ok := veths[ip]; ok {
			return i, nil
		}
		return 0, fmt.Errorf("route to %s: %w", ip, errNoRoute)
	}
	pods := []Pod{
		{Namespace: "app", Name: "a", NodeName: "n1", IPs: []netip.Addr{ipA, ip6}, Phase: "Running"},
		{Namespace: "other", Name: "b", NodeName: "n1", IPs: []netip.Addr{ipB}, Phase: "Running"},
		{Namespace: "app", Name: "c", NodeName: "n1", IPs: []netip.Addr{ipC}, Phase: "Running"}, // unresolvable
		{Namespace: "app", Name: "host", NodeName: "n1", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}, HostNetwork: true},
		{Namespace: "app", Name: "done", NodeName: "n1", IPs: []netip.Addr{ipB}, Phase: PodSucceeded},
		{Namespace: "app", Name: "elsewhere", NodeName: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}},
		{Namespace: "app", Name: "noip", NodeName: "n1", Phase: "Pending"},
	}
	got, err := Targets("n1", pods, namespaces, resolve)
	want := []Target{
		{Namespace: "app", Name: "a", IP: ipA, Ifindex: 10, Enroll: true},
		{Namespace: "app", Name: "a", IP: ip6, Ifindex: 10, Enroll: true},
		{Namespace: "other", Name: "b", IP: ipB, Ifindex: 11, Enroll: false},
		{Namespace: "app", Name: "c", IP: ipC, Ifindex: 0, Enroll: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Targets =\n  %+v\nwant\n  %+v", got, want)
	}
	if !errors.Is(err, errNoRoute) {
		t.Errorf("Targets error = %v, want the resolver's error", err)
	}
}
