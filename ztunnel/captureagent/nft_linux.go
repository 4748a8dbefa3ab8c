//go:build linux

package captureagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

// DefaultNotrackTable is the nftables table (family inet) holding the
// notrack rule.
const DefaultNotrackTable = "ambient_capture"

// Notrack keeps packets the capture program assigned to ztunnel (mark
// capture.CaptureMark) out of conntrack in the node's network namespace:
//
//	table inet ambient_capture {
//		chain prerouting {
//			type filter hook prerouting priority raw; policy accept;
//			meta mark & 0x400 == 0x400 notrack
//		}
//	}
//
// Without it, on a node running kube-proxy, a captured connection to a
// ClusterIP is DNATed by conntrack after the program assigned it, and never
// reaches ztunnel's listener. The rule runs the nft binary (package nftables),
// in the calling thread's network namespace. The table is ours alone: Ensure
// replaces it whole in one transaction, Remove deletes it.
type Notrack struct {
	// Table defaults to DefaultNotrackTable.
	Table string
	// NFT is the nft binary; default "nft" from PATH.
	NFT string
}

func (n Notrack) table() string {
	if n.Table == "" {
		return DefaultNotrackTable
	}
	return n.Table
}

// Script is the nft input Ensure runs: create-or-replace, atomically.
func (n Notrack) Script() string {
	t := n.table()
	return fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		meta mark & %#[2]x == %#[2]x notrack comment "ztunnel capture: keep assigned packets out of conntrack (kube-proxy DNAT)"
	}
}
`, t, capture.CaptureMark)
}

// RemoveScript is the nft input Remove runs; it succeeds whether or not the
// table exists.
func (n Notrack) RemoveScript() string {
	return fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", n.table())
}

// Ensure installs or replaces the table; it is idempotent.
func (n Notrack) Ensure(ctx context.Context) error {
	if err := n.run(ctx, n.Script()); err != nil {
		return fmt.Errorf("install nftables notrack rule: %w", err)
	}
	return nil
}

// Remove deletes the table; absent is not an error.
func (n Notrack) Remove(ctx context.Context) error {
	if err := n.run(ctx, n.RemoveScript()); err != nil {
		return fmt.Errorf("remove nftables notrack rule: %w", err)
	}
	return nil
}

func (n Notrack) run(ctx context.Context, script string) error {
	bin := n.NFT
	if bin == "" {
		bin = "nft"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("%s not found (install the nftables package, or disable the rule on nodes without kube-proxy): %w", bin, err)
	}
	cmd := exec.CommandContext(ctx, path, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return fmt.Errorf("nft -f -: %w", err)
		}
		return fmt.Errorf("nft -f -: %w: %s", err, msg)
	}
	return nil
}

// notFound reports whether err says the nft binary is missing.
func notFound(err error) bool { return errors.Is(err, exec.ErrNotFound) }
