package ca

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

func pluggedSecret(t *testing.T, ca *certs.CA) *corev1.Secret {
	t.Helper()
	c, k, ch, r, err := ca.PluggedFiles()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: PluggedSecretName, Namespace: "istio-system"},
		Data:       map[string][]byte{CACertKey: c, CAKeyKey: k, CertChainKey: ch, RootCertKey: r},
	}
}

func mustNewCA(t *testing.T) func(*certs.CA, error) *certs.CA {
	return func(ca *certs.CA, err error) *certs.CA {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
}

func TestDecideReload(t *testing.T) {
	sec := &corev1.Secret{Data: map[string][]byte{CACertKey: []byte("a")}}
	fp := secretFingerprint(sec)
	other := secretFingerprint(&corev1.Secret{Data: map[string][]byte{CACertKey: []byte("b")}})
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, PluggedSecretName)
	tests := []struct {
		name string
		err  error
		sec  *corev1.Secret
		seen bool
		last [sha256.Size]byte
		gone bool
		want reloadAction
	}{
		{"first sight loads", nil, sec, false, [sha256.Size]byte{}, false, reloadLoad},
		{"unchanged", nil, sec, true, fp, false, reloadNone},
		{"changed loads", nil, sec, true, other, false, reloadLoad},
		{"deleted", notFound, nil, true, fp, false, reloadGone},
		{"still deleted", notFound, nil, false, fp, true, reloadNone},
		{"read error retried", errors.New("timeout"), nil, true, fp, false, reloadRetried},
	}
	for _, tt := range tests {
		if got := decideReload(tt.err, tt.sec, tt.seen, tt.last, tt.gone); got != tt.want {
			t.Errorf("%s: decideReload = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestReloaderRotation: istiod-lite starts on its self-signed root; a
// cacerts Secret (root1 + intermediate1) is installed, then rotated to
// intermediate2 with root-cert.pem holding root1 and root2. Without a
// restart the server signs with each new intermediate and returns every
// distributed root; an invalid Secret and a deleted one keep the current CA.
func TestReloaderRotation(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	start, src, err := LoadOrCreateCA(ctx, client, StoreOptions{}, log)
	if err != nil || src != SourceGenerated {
		t.Fatalf("LoadOrCreateCA = %v, %v", src, err)
	}
	srv, err := NewServer(Options{CA: start, Client: client, Authenticator: stubAuthenticator(impersonationCallers), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	pub := NewRootPublisher(client, start.RootsPEM(), nil, 0, zap.NewNop())
	var changes int
	r, err := NewReloader(ReloaderOptions{Client: client, Current: start, Logger: log, OnChange: func(c *certs.CA) {
		changes++
		srv.SetCA(c)
		pub.SetRoots(c.RootsPEM())
	}})
	if err != nil {
		t.Fatal(err)
	}
	// issue asks the server for app/sleep's certificate and returns the chain.
	issue := func() []string {
		t.Helper()
		rctx := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer sleep-a"))
		resp, err := srv.CreateCertificate(rctx, request(csrPEM(t), 0, ""))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetCertChain()
	}
	signedBy := func(chain []string, signer *certs.CA) bool {
		c, err := certs.ParseCertsPEM([]byte(chain[0]))
		return err == nil && c[0].CheckSignatureFrom(signer.SigningCert()) == nil
	}
	secrets := client.CoreV1().Secrets("istio-system")

	if r.Check(ctx) || changes != 0 {
		t.Fatal("no cacerts: CA changed")
	}

	root1 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	root2 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	int1 := mustNewCA(t)(root1.NewIntermediate("intermediate1", time.Hour))
	int2 := mustNewCA(t)(root2.NewIntermediate("intermediate2", time.Hour))

	// Install: root1 + intermediate1.
	if _, err := secrets.Create(ctx, pluggedSecret(t, int1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !r.Check(ctx) || !signedBy(issue(), int1) {
		t.Fatal("cacerts installed: server does not sign with intermediate1")
	}
	if r.Check(ctx) || changes != 1 {
		t.Fatalf("unchanged cacerts reloaded again (changes = %d)", changes)
	}

	// An invalid Secret (key of another CA) is refused; intermediate1 keeps signing.
	bad := pluggedSecret(t, int1)
	bad.Data[CAKeyKey], _ = int2.SigningKeyPEM()
	if _, err := secrets.Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r.Check(ctx) || !signedBy(issue(), int1) {
		t.Fatal("invalid cacerts: CA changed")
	}
	if n := logs.FilterMessage("plugged-in CA secret is invalid; the current CA keeps signing (fix the secret)").Len(); n != 1 {
		t.Fatalf("invalid secret logged %d times, want 1", n)
	}

	// Rotation: intermediate2 signs; root-cert.pem holds root2 and root1.
	rotating := int2.WithRoots(root1.SigningCert())
	if _, err := secrets.Update(ctx, pluggedSecret(t, rotating), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !r.Check(ctx) {
		t.Fatal("rotated cacerts not reloaded")
	}
	chain := issue()
	if !signedBy(chain, int2) {
		t.Fatal("after rotation: not signed by intermediate2")
	}
	all, err := certs.ParseCertsPEM([]byte(strings.Join(chain, "")))
	if err != nil {
		t.Fatal(err)
	}
	_, roots := certs.SplitRoots(all)
	if len(roots) != 2 || !roots[0].Equal(root2.SigningCert()) || !roots[1].Equal(root1.SigningCert()) {
		t.Fatalf("response roots = %d, want root2 then root1", len(roots))
	}
	if pub.roots() != string(rotating.RootsPEM()) {
		t.Fatal("root publisher not given both roots")
	}

	// Deleted: the current CA keeps signing; said once.
	if err := secrets.Delete(ctx, PluggedSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.Check(ctx)
	r.Check(ctx)
	if !signedBy(issue(), int2) {
		t.Fatal("cacerts deleted: CA changed")
	}
	if n := logs.FilterMessageSnippet("plugged-in CA secret absent").Len(); n != 1 {
		t.Fatalf("deletion logged %d times, want 1", n)
	}
}
