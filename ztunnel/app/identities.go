package app

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// identitySweepPeriod is how often certificates of identities no local
// workload uses any more are dropped; an identity is dropped after two
// sweeps without a workload, so a pod being replaced keeps its certificate.
const identitySweepPeriod = 30 * time.Second

// localIdentities is the set of identities of node's workloads (enrolled
// or not: a pod being enrolled needs its certificate at once).
func localIdentities(snap *state.Snapshot, node string) map[spiffe.Identity]bool {
	ids := map[spiffe.Identity]bool{}
	for _, w := range snap.Workloads() {
		if w.Node == node && !w.Identity.IsZero() {
			ids[w.Identity] = true
		}
	}
	return ids
}

// identitySweeper decides which held identities have departed: not used by
// a workload of the node in this sweep nor in the previous one.
type identitySweeper struct {
	node string
	// unused are the held identities no local workload used at the last
	// sweep.
	unused map[spiffe.Identity]bool
}

// sweep returns the identities of held to forget now, given the current
// state, and remembers the ones to forget next time if still unused.
func (s *identitySweeper) sweep(snap *state.Snapshot, held []spiffe.Identity) []spiffe.Identity {
	used := localIdentities(snap, s.node)
	var forget []spiffe.Identity
	next := map[spiffe.Identity]bool{}
	for _, id := range held {
		switch {
		case used[id]:
		case s.unused[id]:
			forget = append(forget, id)
		default:
			next[id] = true
		}
	}
	s.unused = next
	return forget
}

// sweepIdentities forgets departed identities every period until ctx ends.
func sweepIdentities(ctx context.Context, store *state.Store, ids *identity.Manager, node string, period time.Duration, log *zap.Logger) error {
	s := &identitySweeper{node: node}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		forget := s.sweep(store.Snapshot(), ids.Identities())
		if len(forget) == 0 {
			continue
		}
		drop := make(map[spiffe.Identity]bool, len(forget))
		for _, id := range forget {
			drop[id] = true
		}
		// Re-check against the newest state: a workload may have come back
		// since the sweep.
		used := localIdentities(store.Snapshot(), node)
		gone := ids.ForgetExcept(func(id spiffe.Identity) bool { return !drop[id] || used[id] })
		for _, id := range gone {
			log.Info("certificate of a departed identity dropped", zap.Stringer("identity", id))
		}
	}
}
