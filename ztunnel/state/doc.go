// Package state holds ztunnel's view of the mesh: the workloads, services and
// L4 authorization policies received over xDS (istio.workload.Address and
// istio.security.Authorization) or loaded from a local config file.
//
// There is one Store with one writer (the xDS handler). Every update is
// validated as a whole — an invalid resource rejects the whole update, so the
// previous Snapshot stays and the xDS client can NACK — and produces a new
// immutable Snapshot, published through an atomic.Pointer. Readers (the
// proxies, the admin server) call Store.Snapshot once per decision and never
// lock. Snapshots share unchanged data copy-on-write: indexes are sharded
// maps and an update copies only the shards it touches.
package state
