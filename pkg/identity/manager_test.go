package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and the HTTP/2 transport's background goroutines.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func TestRefreshAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		nb, na, recv time.Time
		jitter       float64
		want         time.Time
	}{
		{"half life", t0, t0.Add(24 * time.Hour), t0, 0, t0.Add(12 * time.Hour)},
		{"jitter +10%", t0, t0.Add(24 * time.Hour), t0, 0.1, t0.Add(12*time.Hour + 72*time.Minute)},
		{"jitter -10%", t0, t0.Add(24 * time.Hour), t0, -0.1, t0.Add(12*time.Hour - 72*time.Minute)},
		{"backdated NotBefore ignored", t0.Add(-time.Minute), t0.Add(2 * time.Second), t0, 0, t0.Add(time.Second)},
		{"received late", t0, t0.Add(10 * time.Hour), t0.Add(2 * time.Hour), 0, t0.Add(6 * time.Hour)},
		{"already expired: now", t0, t0.Add(time.Hour), t0.Add(2 * time.Hour), 0, t0.Add(2 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refreshAt(tt.nb, tt.na, tt.recv, tt.jitter); !got.Equal(tt.want) {
				t.Fatalf("refreshAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{2, 0, time.Second},
		{4, 0, 4 * time.Second},
		{7, 0, 30 * time.Second},
		{1000, 0, 30 * time.Second},
		{1, 0.1, 550 * time.Millisecond},
		{7, -0.1, 27 * time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, 500*time.Millisecond, 30*time.Second, tt.jitter); got != tt.want {
			t.Errorf("backoff(%d, jitter %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
}

func newTestManager(t *testing.T, f Fetcher, clock Clock) *Manager {
	t.Helper()
	m, err := NewManager(Options{Fetcher: f, Clock: clock, TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func snapshotOf(m *Manager, id spiffe.Identity) CertInfo {
	for _, ci := range m.Snapshot() {
		if ci.Identity == id.String() {
			return ci
		}
	}
	return CertInfo{}
}

func TestRenewAtHalfLife(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, 24*time.Hour)
	m := newTestManager(t, ca, clock)
	ctx := context.Background()

	first, err := m.GetCertificate(ctx, idSleep)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "renewal timer", func() bool { return clock.Waiters() == 1 })
	ci := snapshotOf(m, idSleep)
	if ci.State != StateAvailable || ci.SerialNumber != first.Leaf.SerialNumber.Text(16) {
		t.Fatalf("snapshot = %+v", ci)
	}
	if d := ci.RefreshAt.Sub(first.Leaf.NotBefore); d < 10*time.Hour+48*time.Minute || d > 13*time.Hour+12*time.Minute {
		t.Fatalf("refresh after %v, want 12h ±10%%", d)
	}

	clock.Advance(10 * time.Hour) // before the earliest jittered refresh
	if clock.Waiters() != 1 || ca.calls.Load() != 1 {
		t.Fatalf("renewed too early: %d fetches", ca.calls.Load())
	}
	again, _ := m.GetCertificate(ctx, idSleep)
	if again != first {
		t.Fatal("certificate not shared before renewal")
	}

	clock.Advance(4 * time.Hour) // past the latest jittered refresh, long before expiry
	waitFor(t, "renewed certificate", func() bool {
		c, err := m.GetCertificate(ctx, idSleep)
		return err == nil && c != first
	})
	renewed, _ := m.GetCertificate(ctx, idSleep)
	if renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 || !clock.Now().Before(first.Leaf.NotAfter) {
		t.Fatal("renewal did not happen before expiry")
	}
	if ca.calls.Load() != 2 {
		t.Fatalf("fetches = %d, want 2", ca.calls.Load())
	}
}

func TestRenewFailureKeepsServingThenRecovers(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	m := newTestManager(t, ca, clock)
	ctx := context.Background()

	first, err := m.GetCertificate(ctx, idSleep)
	if err != nil {
		t.Fatal(err)
	}
	ca.setFail(func(spiffe.Identity) error { return errCADown })
	waitFor(t, "renewal timer", func() bool { return clock.Waiters() == 1 })
	clock.Advance(40 * time.Minute) // past refresh (30 min ±10%)
	waitFor(t, "failed renewal", func() bool { return snapshotOf(m, idSleep).Failures == 1 && clock.Waiters() == 1 })

	ci := snapshotOf(m, idSleep)
	if ci.State != StateAvailable || ci.Error == "" {
		t.Fatalf("after failed renewal: %+v, want available with an error", ci)
	}
	if c, err := m.GetCertificate(ctx, idSleep); err != nil || c != first {
		t.Fatalf("old valid certificate not served during retries: %v", err)
	}
	// Retries back off: the first retry comes within 550 ms.
	clock.Advance(600 * time.Millisecond)
	waitFor(t, "second failure", func() bool { return snapshotOf(m, idSleep).Failures == 2 && clock.Waiters() == 1 })
	if m.Stats().Failures != 2 {
		t.Fatalf("Stats().Failures = %d, want 2", m.Stats().Failures)
	}

	// The old certificate expires while the CA is down.
	clock.Advance(25 * time.Minute)
	waitFor(t, "expired state", func() bool { return snapshotOf(m, idSleep).State == StateUnavailable })
	if _, err := m.GetCertificate(ctx, idSleep); !errors.Is(err, errCADown) {
		t.Fatalf("expired and CA down: err = %v, want errCADown", err)
	}

	// The CA comes back: the next retry succeeds.
	ca.setFail(nil)
	waitFor(t, "retry timer", func() bool { return clock.Waiters() == 1 })
	clock.Advance(time.Minute)
	waitFor(t, "recovered", func() bool { return snapshotOf(m, idSleep).State == StateAvailable })
	c, err := m.GetCertificate(ctx, idSleep)
	if err != nil || c == first {
		t.Fatalf("after recovery: %v", err)
	}
	if ci := snapshotOf(m, idSleep); ci.Error != "" {
		t.Fatalf("error not cleared: %+v", ci)
	}
}

func TestConcurrentFirstUseSharesOneFetch(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	release := make(chan struct{})
	ca.block[idSleep] = release
	m := newTestManager(t, ca, clock)

	const n = 20
	var wg sync.WaitGroup
	got := make([]*tls.Certificate, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = m.GetCertificate(context.Background(), idSleep)
		}()
	}
	waitFor(t, "first fetch", func() bool { return ca.calls.Load() == 1 })
	if s := snapshotOf(m, idSleep); s.State != StateInitializing {
		t.Fatalf("state during first fetch = %q, want initializing", s.State)
	}
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("caller %d: %v, same cert %v", i, errs[i], got[i] == got[0])
		}
	}
	if ca.calls.Load() != 1 {
		t.Fatalf("fetches = %d, want 1", ca.calls.Load())
	}
}

func TestOneIdentityDoesNotBlockAnother(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	stuck := make(chan struct{})
	ca.block[idSleep] = stuck // the CA never answers for sleep
	m := newTestManager(t, ca, clock)

	m.Prefetch(idSleep)
	waitFor(t, "sleep fetch in flight", func() bool { return ca.count(idSleep) == 1 })
	if _, err := m.GetCertificate(context.Background(), idHttpbin); err != nil {
		t.Fatalf("httpbin blocked by sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.GetCertificate(ctx, idSleep); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting caller: err = %v, want context.Canceled", err)
	}
	close(stuck)
}

func TestFirstFetchFailureFailsFast(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	ca.setFail(func(id spiffe.Identity) error {
		if id == idSleep {
			return errCADown
		}
		return nil
	})
	m := newTestManager(t, ca, clock)
	if _, err := m.GetCertificate(context.Background(), idSleep); !errors.Is(err, errCADown) {
		t.Fatalf("err = %v, want errCADown", err)
	}
	// During backoff another caller fails at once, without a new fetch.
	if _, err := m.GetCertificate(context.Background(), idSleep); !errors.Is(err, errCADown) {
		t.Fatalf("second caller: err = %v, want errCADown", err)
	}
	if ca.count(idSleep) != 1 {
		t.Fatalf("fetches = %d, want 1 (retries wait for the backoff)", ca.count(idSleep))
	}
	if s := snapshotOf(m, idSleep); s.State != StateUnavailable || s.Error == "" {
		t.Fatalf("snapshot = %+v, want unavailable with error", s)
	}
	if _, err := m.GetCertificate(context.Background(), idHttpbin); err != nil {
		t.Fatalf("other identity: %v", err)
	}
}

func TestForgetAndPrefetch(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	m := newTestManager(t, ca, clock)

	m.Prefetch(idSleep)
	waitFor(t, "prefetched", func() bool { return snapshotOf(m, idSleep).State == StateAvailable })
	if _, err := m.GetCertificate(context.Background(), idSleep); err != nil || ca.calls.Load() != 1 {
		t.Fatalf("prefetched cert not reused: %v, %d fetches", err, ca.calls.Load())
	}
	m.Forget(idSleep)
	if len(m.Snapshot()) != 0 {
		t.Fatalf("snapshot after Forget = %+v", m.Snapshot())
	}
	waitFor(t, "renewal stopped", func() bool { return clock.Waiters() == 0 })
	if _, err := m.GetCertificate(context.Background(), idSleep); err != nil || ca.calls.Load() != 2 {
		t.Fatalf("after Forget: %v, %d fetches, want a new fetch", err, ca.calls.Load())
	}
	if _, err := m.GetCertificate(context.Background(), spiffe.Identity{}); err == nil {
		t.Fatal("empty identity accepted")
	}
}

func TestRejectsWrongIdentityFromCA(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	liar := fetcherFunc(func(ctx context.Context, id spiffe.Identity, csr []byte) ([]*x509Cert, error) {
		return ca.Fetch(ctx, idHttpbin, csr)
	})
	m := newTestManager(t, liar, clock)
	if _, err := m.GetCertificate(context.Background(), idSleep); err == nil {
		t.Fatal("certificate for another identity accepted")
	}
}

func TestBundle(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	static, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Options{Fetcher: ca, Clock: clock, TrustDomain: "cluster.local", Roots: static.Chain()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	peer, _ := static.Issue(idHttpbin, time.Hour)
	later, _ := certs.NewSelfSignedCA("cluster.local", time.Hour)
	laterPeer, _ := later.Issue(idHttpbin, time.Hour)
	if _, err := m.Bundle().VerifyRaw(laterPeer.Certificate); err == nil {
		t.Fatal("unknown root trusted")
	}
	m.AddRoots(later.Chain())
	if _, err := m.Bundle().VerifyRaw(laterPeer.Certificate); err != nil {
		t.Fatalf("added root not trusted: %v", err)
	}
	if _, err := m.Bundle().VerifyRaw(peer.Certificate); err != nil {
		t.Fatalf("configured root not trusted: %v", err)
	}
	c, err := m.GetCertificate(context.Background(), idSleep)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := m.Bundle().VerifyRaw(c.Certificate); err != nil || id != idSleep {
		t.Fatalf("root of fetched chain not learned: %v", err)
	}
	if len(c.Certificate) != 1 {
		t.Fatalf("TLS chain carries %d certs, want the leaf only (root left out)", len(c.Certificate))
	}
}

func TestClosedManager(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(t, newFakeCA(t, clock, time.Hour), clock)
	m.Close()
	if _, err := m.GetCertificate(context.Background(), idSleep); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if _, err := NewManager(Options{}); err == nil {
		t.Fatal("manager without fetcher accepted")
	}
}

// TestForgetExcept: identities keep rejects are dropped (their renewal
// stops, the next use fetches anew); the kept one is untouched.
func TestForgetExcept(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	m := newTestManager(t, ca, clock)
	ctx := context.Background()
	kept, err := m.GetCertificate(ctx, idSleep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(ctx, idHttpbin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two renewal timers", func() bool { return clock.Waiters() == 2 })
	if got := m.Identities(); len(got) != 2 {
		t.Fatalf("Identities() = %v, want two", got)
	}

	gone := m.ForgetExcept(func(id spiffe.Identity) bool { return id == idSleep })
	if len(gone) != 1 || gone[0] != idHttpbin {
		t.Fatalf("forgot %v, want [%s]", gone, idHttpbin)
	}
	if got := m.Identities(); len(got) != 1 || got[0] != idSleep {
		t.Fatalf("Identities() after ForgetExcept = %v, want [%s]", got, idSleep)
	}
	waitFor(t, "the forgotten identity's renewal stopped", func() bool { return clock.Waiters() == 1 })
	if again, err := m.GetCertificate(ctx, idSleep); err != nil || again != kept || ca.count(idSleep) != 1 {
		t.Fatalf("kept identity: %v, same certificate %v, %d fetches", err, again == kept, ca.count(idSleep))
	}
	if _, err := m.GetCertificate(ctx, idHttpbin); err != nil || ca.count(idHttpbin) != 2 {
		t.Fatalf("forgotten identity used again: %v, %d fetches, want a new fetch", err, ca.count(idHttpbin))
	}
	if gone := m.ForgetExcept(func(spiffe.Identity) bool { return true }); len(gone) != 0 {
		t.Fatalf("keep-all forgot %v", gone)
	}
}
