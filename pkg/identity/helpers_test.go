package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// fakeClock fires timers only when advanced.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[*fakeWaiter]struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Now(), waiters: map[*fakeWaiter]struct{}{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWaiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		w.ch <- c.now
		return w.ch, func() {}
	}
	c.waiters[w] = struct{}{}
	return w.ch, func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for w := range c.waiters {
		if !c.now.Before(w.at) {
			w.ch <- c.now
			delete(c.waiters, w)
		}
	}
}

func (c *fakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// waitFor polls cond until it holds; the test binary's timeout bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeCA signs leaves valid from the fake clock's now for ttl.
type fakeCA struct {
	clock *fakeClock
	root  *x509.Certificate
	key   *ecdsa.PrivateKey
	ttl   time.Duration

	calls atomic.Int64
	// fail, when it returns an error for id, makes the fetch fail.
	mu   sync.Mutex
	fail func(id spiffe.Identity) error
	// block, when non-nil for id, is waited on before answering.
	block map[spiffe.Identity]chan struct{}
	// callsFor counts fetches per identity.
	callsFor map[spiffe.Identity]int
}

func newFakeCA(t *testing.T, clock *fakeClock, ttl time.Duration) *fakeCA {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &fakeCA{clock: clock, root: root, key: key, ttl: ttl, block: map[spiffe.Identity]chan struct{}{}, callsFor: map[spiffe.Identity]int{}}
}

var serial atomic.Int64

func (f *fakeCA) Fetch(ctx context.Context, id spiffe.Identity, csrDER []byte) ([]*x509.Certificate, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.callsFor[id]++
	fail, block := f.fail, f.block[id]
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(id); err != nil {
			return nil, err
		}
	}
	csr, err := certs.ParseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	now := f.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)), NotBefore: now, NotAfter: now.Add(f.ttl),
		URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.root, csr.PublicKey, f.key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{leaf, f.root}, nil
}

func (f *fakeCA) setFail(fn func(spiffe.Identity) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func (f *fakeCA) count(id spiffe.Identity) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.callsFor[id]
}

var errCADown = errors.New("CA unreachable")

var (
	idSleep   = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "sleep"}
	idHttpbin = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "httpbin"}
)

type x509Cert = x509.Certificate

type fetcherFunc func(ctx context.Context, id spiffe.Identity, csr []byte) ([]*x509.Certificate, error)

func (f fetcherFunc) Fetch(ctx context.Context, id spiffe.Identity, csr []byte) ([]*x509.Certificate, error) {
	return f(ctx, id, csr)
}
