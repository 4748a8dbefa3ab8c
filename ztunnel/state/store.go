package state

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/ztunnel/rbac"
)

// Store holds the current Snapshot. Apply and Replace calls are serialised
// (there is meant to be one writer); Snapshot never blocks.
type Store struct {
	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[Snapshot]
}

// NewStore returns a store holding an empty snapshot.
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(emptySnapshot())
	return s
}

// Snapshot returns the current snapshot. Take it once per decision.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// ApplyAddresses applies a delta of istio.workload.Address resources keyed
// by resource name (a workload's uid or a service's "namespace/hostname").
// Removing an unknown name is not an error. If any upsert is invalid the
// whole update is rejected, the current snapshot is kept and the returned
// error (wrapping ErrInvalid) names every bad resource and field.
func (s *Store) ApplyAddresses(upserts map[string]*workloadapi.Address, removes []string) error {
	wls, svcs, err := parseAddresses(upserts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Store(applyAddresses(s.cur.Load(), wls, svcs, removes))
	return nil
}

// ReplaceAddresses makes all the complete set of addresses (state-of-the-
// world, as for a local config file).
func (s *Store) ReplaceAddresses(all map[string]*workloadapi.Address) error {
	wls, svcs, err := parseAddresses(all)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	var removes []string
	cur.workloads.each(func(uid string, _ *Workload) {
		if _, ok := all[uid]; !ok {
			removes = append(removes, uid)
		}
	})
	cur.services.each(func(key string, _ *Service) {
		if _, ok := all[key]; !ok {
			removes = append(removes, key)
		}
	})
	s.cur.Store(applyAddresses(cur, wls, svcs, removes))
	return nil
}

// ApplyAuthorizations applies a delta of istio.security.Authorization
// resources keyed by resource name ("namespace/name"), with the same
// all-or-nothing validation as ApplyAddresses.
func (s *Store) ApplyAuthorizations(upserts map[string]*security.Authorization, removes []string) error {
	if err := validatePolicies(upserts); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Store(applyPolicies(s.cur.Load(), upserts, removes))
	return nil
}

// ReplaceAuthorizations makes all the complete set of policies.
func (s *Store) ReplaceAuthorizations(all map[string]*security.Authorization) error {
	if err := validatePolicies(all); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	var removes []string
	cur.policies.each(func(name string, _ *security.Authorization) {
		if _, ok := all[name]; !ok {
			removes = append(removes, name)
		}
	})
	s.cur.Store(applyPolicies(cur, all, removes))
	return nil
}

func parseAddresses(upserts map[string]*workloadapi.Address) ([]*Workload, []*Service, error) {
	var (
		wls  []*Workload
		svcs []*Service
		errs []error
	)
	for _, name := range slices.Sorted(maps.Keys(upserts)) {
		a := upserts[name]
		switch {
		case a.GetWorkload() != nil:
			w, err := ParseWorkload(name, a.GetWorkload())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			wls = append(wls, w)
		case a.GetService() != nil:
			svc, err := ParseService(name, a.GetService())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			svcs = append(svcs, svc)
		default:
			errs = append(errs, invalid("address", name, "type", "neither workload nor service"))
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("reject address update: %w", errors.Join(errs...))
	}
	return wls, svcs, nil
}

func validatePolicies(upserts map[string]*security.Authorization) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(upserts)) {
		p := upserts[name]
		if p == nil {
			errs = append(errs, invalid("authorization", name, "resource", "nil"))
			continue
		}
		if p.GetNamespace() == "" || p.GetName() == "" {
			errs = append(errs, invalid("authorization", name, "namespace/name", "both are required"))
			continue
		}
		if want := p.GetNamespace() + "/" + p.GetName(); want != name {
			errs = append(errs, invalid("authorization", name, "namespace/name", "%q differs from the resource name", want))
			continue
		}
		if err := rbac.Validate(p); err != nil {
			errs = append(errs, fmt.Errorf("authorization %q: %w: %w", name, err, ErrInvalid))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("reject authorization update: %w", errors.Join(errs...))
	}
	return nil
}

// addrBuilder builds the next snapshot's address indexes from the previous
// one, touching only what the update changes.
type addrBuilder struct {
	workloads *cowEdit[string, *Workload]
	wlByAddr  *cowEdit[NetAddr, *Workload]
	services  *cowEdit[string, *Service]
	svcByAddr *cowEdit[NetAddr, *Service]
	endpoints *cowEdit[string, []Endpoint]

	// epChanges[svcKey][uid]: new endpoint, or nil to remove.
	epChanges map[string]map[string]*Endpoint
	// ranged services removed (by key) and added.
	rangeRemoved map[string]bool
	rangeAdded   []*Service
}

func applyAddresses(old *Snapshot, wls []*Workload, svcs []*Service, removes []string) *Snapshot {
	if len(wls) == 0 && len(svcs) == 0 && len(removes) == 0 {
		return old
	}
	b := &addrBuilder{
		workloads:    old.workloads.edit(),
		wlByAddr:     old.wlByAddr.edit(),
		services:     old.services.edit(),
		svcByAddr:    old.svcByAddr.edit(),
		endpoints:    old.endpoints.edit(),
		epChanges:    map[string]map[string]*Endpoint{},
		rangeRemoved: map[string]bool{},
	}
	for _, name := range removes {
		b.removeWorkload(name)
		b.removeService(name)
	}
	for _, w := range wls {
		b.removeService(w.UID) // a name cannot be both kinds
		b.upsertWorkload(w)
	}
	for _, svc := range svcs {
		b.removeWorkload(svc.Key)
		b.upsertService(svc)
	}
	for key, ch := range b.epChanges {
		old, _ := b.endpoints.get(key)
		if eps := mergeEndpoints(old, ch); len(eps) > 0 {
			b.endpoints.set(key, eps)
		} else {
			b.endpoints.del(key)
		}
	}
	next := *old
	next.version++
	next.workloads = b.workloads.done()
	next.wlByAddr = b.wlByAddr.done()
	next.services = b.services.done()
	next.svcByAddr = b.svcByAddr.done()
	next.endpoints = b.endpoints.done()
	if len(b.rangeRemoved) > 0 || len(b.rangeAdded) > 0 {
		var ranges []*Service
		for _, svc := range old.svcRanges {
			if !b.rangeRemoved[svc.Key] {
				ranges = append(ranges, svc)
			}
		}
		ranges = append(ranges, b.rangeAdded...)
		slices.SortFunc(ranges, func(a, b *Service) int { return strings.Compare(a.Key, b.Key) })
		next.svcRanges = ranges
	}
	return &next
}

func (b *addrBuilder) epChange(svcKey, uid string, e *Endpoint) {
	m := b.epChanges[svcKey]
	if m == nil {
		m = map[string]*Endpoint{}
		b.epChanges[svcKey] = m
	}
	m[uid] = e
}

func (b *addrBuilder) removeWorkload(uid string) {
	old, ok := b.workloads.get(uid)
	if !ok {
		return
	}
	b.workloads.del(uid)
	if !old.HostNetwork {
		for _, a := range old.Addrs {
			na := NetAddr{Network: old.Network, Addr: a}
			if cur, _ := b.wlByAddr.get(na); cur == old {
				b.wlByAddr.del(na)
			}
		}
	}
	for key := range old.Proto.GetServices() {
		b.epChange(key, uid, nil)
	}
}

func (b *addrBuilder) upsertWorkload(w *Workload) {
	b.removeWorkload(w.UID)
	b.workloads.set(w.UID, w)
	if !w.HostNetwork {
		for _, a := range w.Addrs {
			b.wlByAddr.set(NetAddr{Network: w.Network, Addr: a}, w)
		}
	}
	for key, pl := range w.Proto.GetServices() {
		b.epChange(key, w.UID, &Endpoint{Workload: w, Ports: pl})
	}
}

func (b *addrBuilder) removeService(key string) {
	old, ok := b.services.get(key)
	if !ok {
		return
	}
	b.services.del(key)
	for _, na := range old.VIPs {
		if cur, _ := b.svcByAddr.get(na); cur == old {
			b.svcByAddr.del(na)
		}
	}
	if len(old.Prefixes) > 0 {
		b.rangeRemoved[key] = true
		b.rangeAdded = slices.DeleteFunc(b.rangeAdded, func(s *Service) bool { return s.Key == key })
	}
}

func (b *addrBuilder) upsertService(svc *Service) {
	b.removeService(svc.Key)
	b.services.set(svc.Key, svc)
	for _, na := range svc.VIPs {
		b.svcByAddr.set(na, svc)
	}
	if len(svc.Prefixes) > 0 {
		b.rangeAdded = append(b.rangeAdded, svc)
	}
}

// mergeEndpoints applies changes (uid → endpoint, nil to remove) to a slice
// sorted by uid, returning a new sorted slice; old is not modified.
func mergeEndpoints(old []Endpoint, changes map[string]*Endpoint) []Endpoint {
	keys := slices.Sorted(maps.Keys(changes))
	out := make([]Endpoint, 0, len(old)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(old) && old[i].Workload.UID < k {
			out = append(out, old[i])
			i++
		}
		if i < len(old) && old[i].Workload.UID == k {
			i++
		}
		if e := changes[k]; e != nil {
			out = append(out, *e)
		}
	}
	return append(out, old[i:]...)
}

func applyPolicies(old *Snapshot, upserts map[string]*security.Authorization, removes []string) *Snapshot {
	if len(upserts) == 0 && len(removes) == 0 {
		return old
	}
	next := *old
	next.version++
	pe := old.policies.edit()
	next.byNS = maps.Clone(old.byNS)
	remove := func(name string) {
		p, ok := pe.get(name)
		if !ok {
			return
		}
		pe.del(name)
		next.scoped(p, func(l []*security.Authorization) []*security.Authorization {
			return slices.DeleteFunc(slices.Clone(l), func(q *security.Authorization) bool { return q == p })
		})
	}
	for _, name := range removes {
		remove(name)
	}
	for _, name := range slices.Sorted(maps.Keys(upserts)) {
		p := upserts[name]
		remove(name)
		pe.set(name, p)
		next.scoped(p, func(l []*security.Authorization) []*security.Authorization {
			l = append(slices.Clone(l), p)
			slices.SortFunc(l, func(a, b *security.Authorization) int {
				return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
			})
			return l
		})
	}
	next.policies = pe.done()
	return &next
}

// scoped replaces the scope list p belongs to (GLOBAL or its namespace's)
// with f(list). Selector-scoped policies are in no list.
func (s *Snapshot) scoped(p *security.Authorization, f func([]*security.Authorization) []*security.Authorization) {
	switch p.GetScope() {
	case security.Scope_GLOBAL:
		s.global = f(s.global)
	case security.Scope_NAMESPACE:
		if l := f(s.byNS[p.GetNamespace()]); len(l) > 0 {
			s.byNS[p.GetNamespace()] = l
		} else {
			delete(s.byNS, p.GetNamespace())
		}
	}
}
