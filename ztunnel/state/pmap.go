package state

import (
	"hash/maphash"
	"maps"
	"net/netip"
)

// nShards is the number of shards of a cowMap. An update copies only the
// shards it touches, so a single-resource update on a 10k-entry index copies
// about 10000/nShards entries instead of all of them.
const nShards = 64

var hashSeed = maphash.MakeSeed()

func hashString(s string) uint64 { return maphash.String(hashSeed, s) }

func hashNetAddr(a NetAddr) uint64 {
	b := a.Addr.As16()
	return maphash.Bytes(hashSeed, b[:]) ^ maphash.String(hashSeed, a.Network)
}

// cowMap is an immutable map split into shards. It is never modified once
// published; edit returns a builder that copies shards on first write.
type cowMap[K comparable, V any] struct {
	shards [nShards]map[K]V
	n      int
	hash   func(K) uint64
}

func newCowMap[K comparable, V any](hash func(K) uint64) *cowMap[K, V] {
	return &cowMap[K, V]{hash: hash}
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	v, ok := m.shards[m.hash(k)%nShards][k]
	return v, ok
}

func (m *cowMap[K, V]) len() int { return m.n }

// each calls f for every entry, in no particular order.
func (m *cowMap[K, V]) each(f func(K, V)) {
	for _, s := range m.shards {
		for k, v := range s {
			f(k, v)
		}
	}
}

func (m *cowMap[K, V]) edit() *cowEdit[K, V] {
	c := *m
	return &cowEdit[K, V]{m: &c}
}

// cowEdit is a builder for the next version of a cowMap.
type cowEdit[K comparable, V any] struct {
	m     *cowMap[K, V]
	dirty uint64 // bit i set: shard i is owned by this builder
}

func (e *cowEdit[K, V]) own(k K) map[K]V {
	i := e.m.hash(k) % nShards
	if e.dirty&(1<<i) == 0 {
		s := maps.Clone(e.m.shards[i])
		if s == nil {
			s = make(map[K]V)
		}
		e.m.shards[i] = s
		e.dirty |= 1 << i
	}
	return e.m.shards[i]
}

func (e *cowEdit[K, V]) get(k K) (V, bool) { return e.m.get(k) }

func (e *cowEdit[K, V]) set(k K, v V) {
	s := e.own(k)
	if _, ok := s[k]; !ok {
		e.m.n++
	}
	s[k] = v
}

func (e *cowEdit[K, V]) del(k K) {
	if _, ok := e.m.get(k); !ok {
		return
	}
	delete(e.own(k), k)
	e.m.n--
}

// done returns the new version; the builder must not be used afterwards.
func (e *cowEdit[K, V]) done() *cowMap[K, V] {
	m := e.m
	e.m = nil
	return m
}

// NetAddr is an IP address on a network ("" is the default network).
type NetAddr struct {
	Network string
	Addr    netip.Addr
}

// String formats the address as upstream ztunnel does: network/ip.
func (a NetAddr) String() string { return a.Network + "/" + a.Addr.String() }
