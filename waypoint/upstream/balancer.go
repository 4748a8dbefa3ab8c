package upstream

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/state"
)

// Balancer keeps the endpoint-choice state of every cluster across
// configuration snapshots (keyed by cluster name and endpoint address).
type Balancer struct {
	// DefaultOutlier applies to clusters that configure none; the zero value
	// disables ejection.
	DefaultOutlier state.Outlier
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu       sync.Mutex
	clusters map[string]*clusterLB
	rnd      *rand.Rand
}

type clusterLB struct {
	eps   []*state.Endpoint // the list the state below was built for
	hosts []Host
	out   []OutlierState
	rr    uint64
}

// NewBalancer returns a Balancer with the given default outlier detection.
func NewBalancer(def state.Outlier) *Balancer {
	return &Balancer{DefaultOutlier: def, clusters: map[string]*clusterLB{},
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Choice is a chosen endpoint; call Done exactly once with the outcome.
type Choice struct {
	Endpoint *state.Endpoint
	b        *Balancer
	cluster  *state.Cluster
	addr     netip.AddrPort
}

func (b *Balancer) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// syncLocked returns the cluster's state, rebuilt (keeping what is known
// per endpoint address) when the endpoint list changed.
func (b *Balancer) syncLocked(c *state.Cluster) *clusterLB {
	lb := b.clusters[c.Name]
	if lb != nil && sameList(lb.eps, c.Endpoints) {
		return lb
	}
	n := &clusterLB{eps: c.Endpoints, hosts: make([]Host, len(c.Endpoints)), out: make([]OutlierState, len(c.Endpoints))}
	for i, e := range c.Endpoints {
		n.hosts[i].Healthy = e.Healthy
		if lb != nil {
			for j, old := range lb.eps {
				if old.Address == e.Address {
					n.hosts[i].Active, n.hosts[i].EjectedUntil, n.out[i] = lb.hosts[j].Active, lb.hosts[j].EjectedUntil, lb.out[j]
					break
				}
			}
			n.rr = lb.rr
		}
	}
	b.clusters[c.Name] = n
	return n
}

func sameList(a, b []*state.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Pick chooses an endpoint of c; nil when it has none.
func (b *Balancer) Pick(c *state.Cluster) *Choice {
	b.mu.Lock()
	defer b.mu.Unlock()
	lb := b.syncLocked(c)
	i := Choose(lb.hosts, c.LB, b.now(), lb.rr, b.rnd)
	lb.rr++
	if i < 0 {
		return nil
	}
	lb.hosts[i].Active++
	return &Choice{Endpoint: lb.eps[i], b: b, cluster: c, addr: lb.eps[i].Address}
}

// Done records the outcome of the request sent to the picked endpoint:
// failure is a 5xx answer or a connect failure.
func (p *Choice) Done(failure bool) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	lb := b.clusters[p.cluster.Name]
	if lb == nil {
		return
	}
	i := -1
	for j, e := range lb.eps {
		if e.Address == p.addr {
			i = j
			break
		}
	}
	if i < 0 {
		return
	}
	if lb.hosts[i].Active > 0 {
		lb.hosts[i].Active--
	}
	cfg := b.DefaultOutlier
	if p.cluster.Outlier != nil {
		cfg = *p.cluster.Outlier
	}
	now := b.now()
	ejected := 0
	for _, h := range lb.hosts {
		if h.ejected(now) {
			ejected++
		}
	}
	lb.out[i], _ = Observe(lb.out[i], failure, now, cfg, ejected, len(lb.hosts))
	lb.hosts[i].EjectedUntil = lb.out[i].EjectedUntil
}
