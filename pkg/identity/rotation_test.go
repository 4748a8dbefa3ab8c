package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// swapCA signs with whichever CA is current, as istiod-lite does after it
// re-reads cacerts.
type swapCA struct{ cur atomic.Pointer[certs.CA] }

func (s *swapCA) Fetch(ctx context.Context, id spiffe.Identity, csr []byte) ([]*x509.Certificate, error) {
	return LocalFetcher{CA: s.cur.Load(), TTL: time.Hour}.Fetch(ctx, id, csr)
}

func mustCA(t *testing.T) func(*certs.CA, error) *certs.CA {
	return func(ca *certs.CA, err error) *certs.CA {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
}

// issuedBy reports whether c's chain (as presented) was signed by signer.
func issuedBy(c *tls.Certificate, signer *certs.CA) bool {
	return c != nil && len(c.Certificate) > 1 && c.Leaf.CheckSignatureFrom(signer.SigningCert()) == nil
}

// TestTrustBundleFollowsCA walks a root rotation: root1 alone, then root2 and
// root1 distributed while intermediate2 signs, then root2 alone. The bundle
// follows what the CA distributes (dropping root1 at the end), and held
// certificates move to the new signer as soon as the bundle changes.
func TestTrustBundleFollowsCA(t *testing.T) {
	clock := newFakeClock()
	root1 := mustCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	root2 := mustCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	int1 := mustCA(t)(root1.NewIntermediate("intermediate1", time.Hour))
	int2 := mustCA(t)(root2.NewIntermediate("intermediate2", time.Hour))
	oldPeer := mustTLS(t)(int1.Issue(idHttpbin, time.Hour))
	newPeer := mustTLS(t)(int2.Issue(idHttpbin, time.Hour))

	f := &swapCA{}
	f.cur.Store(int1)
	m := newTestManager(t, f, clock)
	ctx := context.Background()
	trusts := func(c *tls.Certificate) bool { _, err := m.Bundle().VerifyRaw(c.Certificate); return err == nil }

	first, err := m.GetCertificate(ctx, idSleep)
	if err != nil {
		t.Fatal(err)
	}
	if !issuedBy(first, int1) || !trusts(oldPeer) || trusts(newPeer) {
		t.Fatalf("stage 1: issued by int1 %v, trusts old %v, trusts new %v; want true, true, false",
			issuedBy(first, int1), trusts(oldPeer), trusts(newPeer))
	}

	// Overlap: intermediate2 signs, both roots distributed. A new identity's
	// fetch brings the new bundle; the held identity is renewed at once.
	f.cur.Store(int2.WithRoots(root1.SigningCert()))
	idNew := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "new"}
	if _, err := m.GetCertificate(ctx, idNew); err != nil {
		t.Fatal(err)
	}
	if !trusts(oldPeer) || !trusts(newPeer) {
		t.Fatalf("overlap: trusts old %v, new %v; want both", trusts(oldPeer), trusts(newPeer))
	}
	waitFor(t, "early renewal onto intermediate2", func() bool {
		clock.Advance(100 * time.Millisecond) // through the renewal spread (2 s), far from the refresh (30 min)
		c, err := m.GetCertificate(ctx, idSleep)
		return err == nil && issuedBy(c, int2)
	})
	if clock.Now().Sub(first.Leaf.NotBefore) > 10*time.Minute {
		t.Fatal("renewed by the refresh timer, not by the bundle change")
	}
	if got := len(m.Roots()); got != 2 {
		t.Fatalf("overlap: %d roots, want 2", got)
	}

	// End of the overlap: root1 is no longer distributed and is dropped.
	f.cur.Store(int2)
	idNewer := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "newer"}
	if _, err := m.GetCertificate(ctx, idNewer); err != nil {
		t.Fatal(err)
	}
	if trusts(oldPeer) || !trusts(newPeer) {
		t.Fatalf("after overlap: trusts old %v, new %v; want false, true", trusts(oldPeer), trusts(newPeer))
	}
	if roots := m.Roots(); len(roots) != 1 || !roots[0].Equal(root2.SigningCert()) {
		t.Fatalf("after overlap: roots = %d, want root2 only", len(roots))
	}

	// Static roots are kept next to the distributed ones until replaced.
	m.SetRoots(root1.RootList())
	if !trusts(oldPeer) || !trusts(newPeer) {
		t.Fatal("SetRoots(root1): want both trusted")
	}
	m.SetRoots(nil)
	if trusts(oldPeer) {
		t.Fatal("SetRoots(nil): root1 still trusted")
	}
}

func mustTLS(t *testing.T) func(*tls.Certificate, error) *tls.Certificate {
	return func(c *tls.Certificate, err error) *tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// TestFirstBundleDoesNotRenewOthers: learning the first bundle (at start,
// while many identities are fetched at once) renews nothing.
func TestFirstBundleDoesNotRenewOthers(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	m := newTestManager(t, ca, clock)
	for _, id := range []spiffe.Identity{idSleep, idHttpbin} {
		if _, err := m.GetCertificate(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "renewal timers", func() bool { return clock.Waiters() == 2 })
	if ca.count(idSleep) != 1 || ca.count(idHttpbin) != 1 {
		t.Fatalf("fetches = %d, %d; want 1 each", ca.count(idSleep), ca.count(idHttpbin))
	}
}

// TestRenewalFailureSurfaced: a renewal that fails is logged at error level
// with the identity, the likely cause and the time left, and shows in the
// failure counter and the expiry gauge, long before the certificate expires.
func TestRenewalFailureSurfaced(t *testing.T) {
	clock := newFakeClock()
	ca := newFakeCA(t, clock, time.Hour)
	core, logs := observer.New(zapcore.InfoLevel)
	m, err := NewManager(Options{Fetcher: ca, Clock: clock, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collector())

	if _, err := m.GetCertificate(context.Background(), idSleep); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "ztunnel_certificate_renewal_failures_total", ""); got != 0 {
		t.Fatalf("failures before any failure = %v", got)
	}
	ca.setFail(func(spiffe.Identity) error { return status.Error(codes.PermissionDenied, "pod not on node") })
	waitFor(t, "renewal timer", func() bool { return clock.Waiters() == 1 })
	clock.Advance(40 * time.Minute) // past refresh (30 min ±10%), 20 min before expiry
	waitFor(t, "failed renewal", func() bool { return snapshotOf(m, idSleep).Failures == 1 })

	entries := logs.FilterMessage("certificate renewal failed; retrying").All()
	if len(entries) != 1 {
		t.Fatalf("renewal failure logs = %d, want 1", len(entries))
	}
	e := entries[0]
	fields := e.ContextMap()
	if e.Level != zapcore.ErrorLevel || fields["identity"] != idSleep.String() ||
		!strings.Contains(fmt.Sprint(fields["likelyCause"]), "refused this identity") {
		t.Fatalf("log = %v %v, want error level naming %s and the cause", e.Level, fields, idSleep)
	}
	if left, ok := fields["expiresIn"].(time.Duration); !ok || left <= 0 || left > 20*time.Minute {
		t.Fatalf("expiresIn = %v, want within the 20 minutes left", fields["expiresIn"])
	}
	if got := metricValue(t, reg, "ztunnel_certificate_renewal_failures_total", ""); got != 1 {
		t.Fatalf("ztunnel_certificate_renewal_failures_total = %v, want 1", got)
	}
	left := metricValue(t, reg, "ztunnel_certificate_expiry_seconds", idSleep.String())
	if left <= 0 || left > (20*time.Minute).Seconds() {
		t.Fatalf("ztunnel_certificate_expiry_seconds = %v, want in (0, 1200]", left)
	}
	// A forgotten identity leaves no series.
	m.Forget(idSleep)
	if got := metricValue(t, reg, "ztunnel_certificate_expiry_seconds", idSleep.String()); got != -1 {
		t.Fatalf("expiry series of a forgotten identity still exported: %v", got)
	}
}

// metricValue returns the value of name (with identity label value when not
// ""), or -1 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name, identity string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if identity != "" && (len(mt.GetLabel()) != 1 || mt.GetLabel()[0].GetValue() != identity) {
				continue
			}
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return -1
}

func TestLikelyCause(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("fetch: %w", status.Error(codes.Unauthenticated, "x")), "rejected the token"},
		{fmt.Errorf("fetch: %w", status.Error(codes.PermissionDenied, "x")), "refused this identity"},
		{fmt.Errorf("fetch: %w", status.Error(codes.Unavailable, "x")), "unreachable"},
		{fmt.Errorf("fetch: %w", status.Error(codes.FailedPrecondition, "x")), "rotate cacerts"},
		{fmt.Errorf("fetch: %w", status.Error(codes.InvalidArgument, "x")), "malformed"},
		{fmt.Errorf("read token: %w", fs.ErrNotExist), "token file"},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), "did not answer in time"},
		{errors.New("boom"), "unknown"},
	}
	for _, tt := range tests {
		if got := LikelyCause(tt.err); !strings.Contains(got, tt.want) || (tt.want == "" && got != "") {
			t.Errorf("LikelyCause(%v) = %q, want it to mention %q", tt.err, got, tt.want)
		}
	}
}
