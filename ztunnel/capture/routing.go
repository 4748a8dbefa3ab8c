//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults of [NodeRouting]. CaptureMark must match CAPTURE_MARK in bpf/capture.c.
const (
	CaptureMark         = 0x400
	DefaultRouteTable   = 100
	DefaultRulePriority = 32000
)

// NodeRouting delivers packets the program assigned to a socket (marked
// CaptureMark) locally, whatever their destination address:
//
//	ip rule add fwmark 0x400/0x400 lookup 100 priority 32000
//	ip route add local 0.0.0.0/0 dev lo table 100
//	ip -6 rule add fwmark 0x400/0x400 lookup 100 priority 32000
//	ip -6 route add local ::/0 dev lo table 100
//
// The zero value uses the defaults.
type NodeRouting struct {
	Table    int // routing table, default DefaultRouteTable
	Priority int // rule priority, default DefaultRulePriority
	// Handle is the netlink handle of the node's network namespace; nil means
	// the calling thread's network namespace.
	Handle *netlink.Handle
}

var families = []int{netlink.FAMILY_V4, netlink.FAMILY_V6}

func (r NodeRouting) withDefaults() NodeRouting {
	if r.Table == 0 {
		r.Table = DefaultRouteTable
	}
	if r.Priority == 0 {
		r.Priority = DefaultRulePriority
	}
	return r
}

// rule is the policy rule sending marked packets of family to the capture table.
func (r NodeRouting) rule(family int) *netlink.Rule {
	r = r.withDefaults()
	rule := netlink.NewRule()
	rule.Family = family
	rule.Mark = CaptureMark
	mask := uint32(CaptureMark)
	rule.Mask = &mask
	rule.Table = r.Table
	rule.Priority = r.Priority
	return rule
}

// route is the catch-all local route of family in the capture table.
func (r NodeRouting) route(family, loIndex int) *netlink.Route {
	r = r.withDefaults()
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if family == netlink.FAMILY_V6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{
		Family:    family,
		Dst:       dst,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Table:     r.Table,
		LinkIndex: loIndex,
	}
}

// sameRule reports whether an existing rule is the capture rule.
func sameRule(have, want *netlink.Rule) bool {
	return have.Family == want.Family && have.Table == want.Table && have.Priority == want.Priority &&
		have.Mark == want.Mark && have.Mask != nil && want.Mask != nil && *have.Mask == *want.Mask
}

func (r NodeRouting) handle() (*netlink.Handle, func(), error) {
	if r.Handle != nil {
		return r.Handle, func() {}, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink handle: %w", err)
	}
	return h, h.Close, nil
}

// Ensure installs the rules and routes of both families; it is idempotent.
// IPv6 is skipped when the kernel has it disabled.
func (r NodeRouting) Ensure() error {
	h, done, err := r.handle()
	if err != nil {
		return fmt.Errorf("node routing: %w", err)
	}
	defer done()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node routing: find lo: %w", err)
	}
	for _, family := range families {
		if err := r.ensure(h, family, lo.Attrs().Index); err != nil {
			// IPv6 absent (EAFNOSUPPORT) or disabled in this namespace
			// (disable_ipv6=1 makes route changes fail with EACCES): there is
			// no IPv6 traffic to steer.
			if family == netlink.FAMILY_V6 && (errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EACCES)) {
				continue
			}
			return fmt.Errorf("node routing: %w", err)
		}
	}
	return nil
}

func (r NodeRouting) ensure(h *netlink.Handle, family, loIndex int) error {
	if err := h.RouteReplace(r.route(family, loIndex)); err != nil {
		return fmt.Errorf("add local route to table %d: %w", r.withDefaults().Table, err)
	}
	want := r.rule(family)
	rules, err := h.RuleListFiltered(family, want, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	for i := range rules {
		if sameRule(&rules[i], want) {
			return nil
		}
	}
	if err := h.RuleAdd(want); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add fwmark rule: %w", err)
	}
	return nil
}

// Remove deletes the rules and routes; absent ones are not an error.
func (r NodeRouting) Remove() error {
	h, done, err := r.handle()
	if err != nil {
		return fmt.Errorf("node routing: %w", err)
	}
	defer done()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("node routing: find lo: %w", err)
	}
	for _, family := range families {
		err := h.RuleDel(r.rule(family))
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("node routing: delete fwmark rule: %w", err)
		}
		err = h.RouteDel(r.route(family, lo.Attrs().Index))
		if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("node routing: delete local route from table %d: %w", r.withDefaults().Table, err)
		}
	}
	return nil
}
