package identity

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Fetcher obtains a certificate chain (leaf first, root last) for id, signing
// the public key of csrDER.
type Fetcher interface {
	Fetch(ctx context.Context, id spiffe.Identity, csrDER []byte) ([]*x509.Certificate, error)
}

// States of a certificate in Snapshot, as upstream ztunnel's admin shows them.
const (
	StateAvailable    = "available"
	StateInitializing = "initializing"
	StateUnavailable  = "unavailable"
)

// CertInfo describes one identity's certificate for the admin endpoint.
type CertInfo struct {
	Identity     string    `json:"identity"`
	State        string    `json:"state"`
	SerialNumber string    `json:"serialNumber,omitempty"`
	NotBefore    time.Time `json:"notBefore,omitzero"`
	NotAfter     time.Time `json:"notAfter,omitzero"`
	RefreshAt    time.Time `json:"refreshAt,omitzero"`
	Failures     uint64    `json:"failures,omitempty"`
	Error        string    `json:"error,omitempty"`
	// Intermediates are the certificates presented after the leaf (the
	// signing chain, roots excluded), leaf's issuer first.
	Intermediates []ChainCert `json:"intermediates,omitempty"`
}

// ChainCert describes one certificate of a chain.
type ChainCert struct {
	SerialNumber string    `json:"serialNumber"`
	Subject      string    `json:"subject"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
}

// Stats are the manager's counters.
type Stats struct {
	Fetches  uint64 // attempts
	Failures uint64 // failed attempts
}

// Options configures a Manager.
type Options struct {
	Fetcher Fetcher // required
	Logger  *zap.Logger
	// TrustDomain of the bundle returned by Bundle; "" accepts any.
	TrustDomain string
	// Roots are trusted from the start (e.g. root-cert.pem of the
	// istio-ca-root-cert ConfigMap), until SetRoots replaces them. The roots
	// the CA distributes (the self-signed certificates ending each fetched
	// chain) are trusted as well; the latest distributed set replaces the
	// previous one.
	Roots []*x509.Certificate
	// FetchTimeout bounds one fetch; default 10 s.
	FetchTimeout time.Duration
	// InitialBackoff and MaxBackoff bound retries; defaults 500 ms and 30 s.
	InitialBackoff, MaxBackoff time.Duration
	// Jitter is the ± fraction applied to refresh and retry times; default 0.1.
	Jitter float64
	// Clock is for tests; default real time.
	Clock Clock
	// MetricPrefix names the metrics of Collector; default "ztunnel".
	MetricPrefix string
	// RenewSpread spreads the renewals a trust bundle change triggers over
	// a random delay below it, so a node does not send all its CSRs at
	// once; default 2 s, negative renews at once.
	RenewSpread time.Duration
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("identity manager closed")

// Manager holds the certificates of local identities. Safe for concurrent use.
type Manager struct {
	o   Options
	log *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[spiffe.Identity]*entry
	// static roots come from Options.Roots, AddRoots and SetRoots;
	// distributed roots from the latest CA response that carried any.
	static, distributed []*x509.Certificate
	pool                atomic.Pointer[x509.CertPool]

	fetches, failures atomic.Uint64
}

// entry is one identity; its worker goroutine is the only writer of cert.
type entry struct {
	id     spiffe.Identity
	cancel context.CancelFunc

	mu        sync.Mutex
	cert      *tls.Certificate // latest, possibly expired
	refreshAt time.Time
	fetching  bool
	fetched   bool // an attempt has completed
	lastErr   error
	failures  uint64
	// attempt is closed and replaced when an attempt completes.
	attempt chan struct{}
	// renew asks the worker to renew now (the trust bundle changed).
	renew chan struct{}
}

// NewManager builds a Manager. Close it to stop its goroutines.
func NewManager(o Options) (*Manager, error) {
	if o.Fetcher == nil {
		return nil, errors.New("identity manager: no fetcher (use the CA client or a local CA)")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 10 * time.Second
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = max(30*time.Second, o.InitialBackoff)
	}
	if o.Jitter == 0 {
		o.Jitter = 0.1
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.MetricPrefix == "" {
		o.MetricPrefix = "ztunnel"
	}
	if o.RenewSpread == 0 {
		o.RenewSpread = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{o: o, log: o.Logger, ctx: ctx, cancel: cancel, entries: map[spiffe.Identity]*entry{}}
	m.static = uniqueRoots(o.Roots)
	m.rebuildPoolLocked()
	return m, nil
}

// Close stops every renewal and waits for the workers to exit.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// GetCertificate returns the certificate of id, fetching it on first use.
// Concurrent callers share one fetch. A valid certificate is returned at once,
// even while its renewal is failing. When there is none it waits for the
// attempt in flight; if the last attempt failed and none is in flight it
// fails fast (the manager keeps retrying in the background).
func (m *Manager) GetCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	e, err := m.entry(id)
	if err != nil {
		return nil, err
	}
	for {
		e.mu.Lock()
		now := m.o.Clock.Now()
		if e.cert != nil && now.Before(e.cert.Leaf.NotAfter) {
			c := e.cert
			e.mu.Unlock()
			return c, nil
		}
		if e.fetched && !e.fetching {
			err := e.lastErr
			e.mu.Unlock()
			if err == nil {
				err = errors.New("certificate expired and not yet renewed")
			}
			return nil, fmt.Errorf("certificate for %s unavailable (retrying in the background; check the CA address and ztunnel's token): %w", id, err)
		}
		wait := e.attempt
		fetched := e.fetched
		e.mu.Unlock()
		select {
		case <-wait:
			if fetched {
				continue
			}
			// First attempt done: answer from its result.
			e.mu.Lock()
			c, err := e.cert, e.lastErr
			e.mu.Unlock()
			if c != nil && m.o.Clock.Now().Before(c.Leaf.NotAfter) {
				return c, nil
			}
			if err == nil {
				err = ErrClosed
			}
			return nil, fmt.Errorf("certificate for %s: %w", id, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for certificate of %s: %w", id, ctx.Err())
		}
	}
}

// Prefetch starts fetching id's certificate without waiting for it.
func (m *Manager) Prefetch(id spiffe.Identity) {
	_, _ = m.entry(id)
}

// Forget stops renewing id's certificate and drops it. Connections already
// using it keep their handshake state.
func (m *Manager) Forget(id spiffe.Identity) {
	m.mu.Lock()
	e, ok := m.entries[id]
	delete(m.entries, id)
	m.mu.Unlock()
	if ok {
		e.cancel()
		m.log.Debug("identity forgotten", zap.Stringer("identity", id))
	}
}

// ForgetExcept forgets every held identity for which keep returns false, as
// Forget does, and returns them (unsorted). Callers use it to drop the
// certificates of workloads that have left: keep says which identities are
// still in use.
func (m *Manager) ForgetExcept(keep func(spiffe.Identity) bool) []spiffe.Identity {
	var gone []*entry
	m.mu.Lock()
	for id, e := range m.entries {
		if !keep(id) {
			gone = append(gone, e)
			delete(m.entries, id)
		}
	}
	m.mu.Unlock()
	ids := make([]spiffe.Identity, 0, len(gone))
	for _, e := range gone {
		e.cancel()
		ids = append(ids, e.id)
		m.log.Debug("identity forgotten", zap.Stringer("identity", e.id))
	}
	return ids
}

// Identities returns the identities the manager holds (being fetched or
// fetched), unsorted.
func (m *Manager) Identities() []spiffe.Identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]spiffe.Identity, 0, len(m.entries))
	for id := range m.entries {
		ids = append(ids, id)
	}
	return ids
}

// Bundle is the trust bundle for verifying peers: configured roots plus the
// roots of fetched chains.
func (m *Manager) Bundle() spiffe.Bundle {
	return spiffe.Bundle{TrustDomain: m.o.TrustDomain, Roots: m.pool.Load()}
}

// Stats returns the fetch counters.
func (m *Manager) Stats() Stats {
	return Stats{Fetches: m.fetches.Load(), Failures: m.failures.Load()}
}

// Snapshot describes every held identity, sorted by identity.
func (m *Manager) Snapshot() []CertInfo {
	m.mu.Lock()
	entries := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	now := m.o.Clock.Now()
	out := make([]CertInfo, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		ci := CertInfo{Identity: e.id.String(), Failures: e.failures, RefreshAt: e.refreshAt}
		if e.lastErr != nil {
			ci.Error = e.lastErr.Error()
		}
		ci.State = state(e.cert, e.fetched, now)
		if e.cert != nil {
			ci.SerialNumber = e.cert.Leaf.SerialNumber.Text(16)
			ci.NotBefore, ci.NotAfter = e.cert.Leaf.NotBefore, e.cert.Leaf.NotAfter
			for _, raw := range e.cert.Certificate[1:] {
				if c, err := x509.ParseCertificate(raw); err == nil {
					ci.Intermediates = append(ci.Intermediates, ChainCert{SerialNumber: c.SerialNumber.Text(16),
						Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter})
				}
			}
		}
		e.mu.Unlock()
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b CertInfo) int {
		switch {
		case a.Identity < b.Identity:
			return -1
		case a.Identity > b.Identity:
			return 1
		}
		return 0
	})
	return out
}

// state is the admin state of a certificate.
func state(cert *tls.Certificate, fetched bool, now time.Time) string {
	switch {
	case cert != nil && now.Before(cert.Leaf.NotAfter):
		return StateAvailable
	case !fetched:
		return StateInitializing
	default:
		return StateUnavailable
	}
}

// entry returns id's entry, starting its worker on first use.
func (m *Manager) entry(id spiffe.Identity) (*entry, error) {
	if id.IsZero() {
		return nil, errors.New("certificate for an empty identity requested")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if e, ok := m.entries[id]; ok {
		return e, nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	e := &entry{id: id, cancel: cancel, attempt: make(chan struct{}), renew: make(chan struct{}, 1), fetching: true}
	m.entries[id] = e
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run(ctx, e)
	}()
	return e, nil
}

// run fetches and renews one identity's certificate until ctx ends.
func (m *Manager) run(ctx context.Context, e *entry) {
	log := m.log.With(zap.Stringer("identity", e.id))
	retries := 0
	for {
		cert, err := m.fetch(ctx, e.id)
		now := m.o.Clock.Now()
		var wait time.Duration

		e.mu.Lock()
		e.fetching = false
		e.fetched = true
		previous := e.cert
		if err == nil {
			e.cert, e.lastErr = cert, nil
			e.refreshAt = refreshAt(cert.Leaf.NotBefore, cert.Leaf.NotAfter, now, m.jitter())
			wait = e.refreshAt.Sub(now)
			retries = 0
		} else {
			e.lastErr = err
			e.failures++
			retries++
			wait = backoff(retries, m.o.InitialBackoff, m.o.MaxBackoff, m.jitter())
			e.refreshAt = now.Add(wait)
		}
		close(e.attempt)
		e.attempt = make(chan struct{})
		stillValid := e.cert != nil && now.Before(e.cert.Leaf.NotAfter)
		e.mu.Unlock()

		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			log.Debug("certificate fetched", zap.String("serial", cert.Leaf.SerialNumber.Text(16)),
				zap.Time("notAfter", cert.Leaf.NotAfter), zap.Duration("refreshIn", wait))
		case previous == nil:
			m.failures.Add(1)
			log.Warn("certificate fetch failed; retrying", zap.Error(err), zap.String("likelyCause", LikelyCause(err)),
				zap.Int("attempt", retries), zap.Duration("retryIn", wait))
		default:
			// A renewal failed: the workload keeps its certificate only
			// until it expires, so say loudly how long is left and why.
			m.failures.Add(1)
			log.Error("certificate renewal failed; retrying", zap.Error(err), zap.String("likelyCause", LikelyCause(err)),
				zap.Int("attempt", retries), zap.Duration("retryIn", wait), zap.Bool("servingPrevious", stillValid),
				zap.Time("notAfter", previous.Leaf.NotAfter), zap.Duration("expiresIn", previous.Leaf.NotAfter.Sub(now)))
		}

		c, stop := m.o.Clock.After(wait)
		select {
		case <-c:
		case <-e.renew:
			stop()
			if !m.spreadRenewal(ctx) {
				return
			}
			log.Debug("renewing early: the trust bundle changed")
		case <-ctx.Done():
			stop()
			return
		}
		e.mu.Lock()
		e.fetching = true
		e.mu.Unlock()
	}
}

// fetch makes a new key, asks the Fetcher to sign it and checks the result.
func (m *Manager) fetch(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	m.fetches.Add(1)
	key, err := certs.GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := certs.NewCSR(key, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.o.FetchTimeout)
	defer cancel()
	chain, err := m.o.Fetcher.Fetch(ctx, id, csr)
	if err != nil {
		return nil, fmt.Errorf("fetch certificate for %s: %w", id, err)
	}
	return m.accept(key, id, chain)
}

// accept validates a fetched chain and learns its root.
func (m *Manager) accept(key crypto.Signer, id spiffe.Identity, chain []*x509.Certificate) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("CA returned an empty chain for %s", id)
	}
	got, err := spiffe.FromCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("CA returned a certificate without the identity %s: %w", id, err)
	}
	if got != id {
		return nil, fmt.Errorf("CA returned a certificate for %s, asked for %s", got, id)
	}
	tc, err := certs.TLSCertificate(key, chain)
	if err != nil {
		return nil, fmt.Errorf("CA response for %s: %w", id, err)
	}
	if _, roots := certs.SplitRoots(chain); len(roots) > 0 {
		m.setDistributed(roots, id)
	}
	return tc, nil
}

// AddRoots trusts more roots (added to the static ones), e.g. when the
// istio-ca-root-cert ConfigMap gains a root.
func (m *Manager) AddRoots(roots []*x509.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.static = uniqueRoots(append(append([]*x509.Certificate(nil), m.static...), roots...))
	m.rebuildPoolLocked()
}

// SetRoots replaces the static roots (Options.Roots), e.g. with the new
// content of the istio-ca-root-cert ConfigMap after a root rotation ended.
// Roots the CA distributes stay trusted.
func (m *Manager) SetRoots(roots []*x509.Certificate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.static = uniqueRoots(roots)
	m.rebuildPoolLocked()
}

// setDistributed replaces the roots the CA distributes with the set ending
// the chain just fetched for from. When a previously known set changes (a
// root rotation began or ended), every other identity is renewed at once,
// so that local certificates move to the new signing chain and none stays
// chained to a root peers are dropping.
func (m *Manager) setDistributed(roots []*x509.Certificate, from spiffe.Identity) {
	roots = uniqueRoots(roots)
	m.mu.Lock()
	added, removed := diffRoots(m.distributed, roots)
	if len(added) == 0 && len(removed) == 0 {
		m.mu.Unlock()
		return
	}
	first := len(m.distributed) == 0
	m.distributed = roots
	m.rebuildPoolLocked()
	var others []*entry
	if !first {
		for id, e := range m.entries {
			if id != from {
				others = append(others, e)
			}
		}
	}
	m.mu.Unlock()
	m.log.Info("trust bundle updated from the CA", zap.Stringer("from", from),
		zap.Strings("added", rootNames(added)), zap.Strings("removed", rootNames(removed)),
		zap.Int("renewing", len(others)))
	for _, e := range others {
		select {
		case e.renew <- struct{}{}:
		default:
		}
	}
}

// Roots returns every trusted root: static, then distributed.
func (m *Manager) Roots() []*x509.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uniqueRoots(append(append([]*x509.Certificate(nil), m.static...), m.distributed...))
}

// rebuildPoolLocked publishes the union of static and distributed roots.
func (m *Manager) rebuildPoolLocked() {
	p := x509.NewCertPool()
	for _, r := range m.static {
		p.AddCert(r)
	}
	for _, r := range m.distributed {
		p.AddCert(r)
	}
	m.pool.Store(p)
}

// uniqueRoots drops duplicates, keeping the first of each.
func uniqueRoots(roots []*x509.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(roots))
	for _, r := range roots {
		if !slices.ContainsFunc(out, r.Equal) {
			out = append(out, r)
		}
	}
	return out
}

// diffRoots returns the roots of next missing from prev and of prev missing from next.
func diffRoots(prev, next []*x509.Certificate) (added, removed []*x509.Certificate) {
	for _, r := range next {
		if !slices.ContainsFunc(prev, r.Equal) {
			added = append(added, r)
		}
	}
	for _, r := range prev {
		if !slices.ContainsFunc(next, r.Equal) {
			removed = append(removed, r)
		}
	}
	return added, removed
}

// rootNames names roots for logs: subject and serial.
func rootNames(roots []*x509.Certificate) []string {
	out := make([]string, 0, len(roots))
	for _, r := range roots {
		out = append(out, r.Subject.String()+" serial="+r.SerialNumber.Text(16))
	}
	return out
}

// spreadRenewal waits a random part of RenewSpread; false when ctx ended.
func (m *Manager) spreadRenewal(ctx context.Context) bool {
	if m.o.RenewSpread <= 0 {
		return true
	}
	c, stop := m.o.Clock.After(time.Duration(rand.Int64N(int64(m.o.RenewSpread))))
	defer stop()
	select {
	case <-c:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Manager) jitter() float64 {
	return (rand.Float64()*2 - 1) * m.o.Jitter
}
