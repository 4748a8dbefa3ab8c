package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

var testID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}

// newIntermediateCA builds Istio's plugged-in layout: a root and an
// intermediate signing CA, returned as the four cacerts PEM files.
func newIntermediateCA(t *testing.T, interTTL time.Duration) (certPEM, keyPEM, chainPEM, rootPEM []byte) {
	t.Helper()
	root, err := NewSelfSignedCA("cluster.local", 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"cluster.local"}, CommonName: "intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(interTTL),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.SigningCert(), key.Public(), root.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err = EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, append(append([]byte{}, certPEM...), root.RootsPEM()...), root.RootsPEM()
}

func mustCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSignCSR(t *testing.T) {
	ca, err := NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := GenerateKey()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	evil, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/istiod")
	good, _ := NewCSR(p256, testID)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff

	tests := []struct {
		name    string
		csr     []byte
		ttl     time.Duration
		wantTTL time.Duration // approximate, ±Backdate+slack
		wantErr error
	}{
		{"p256", good, time.Minute, time.Minute, nil},
		{"p384", mustCSR(t, p384, &x509.CertificateRequest{}), time.Minute, time.Minute, nil},
		{"rsa2048", mustCSR(t, rsa2048, &x509.CertificateRequest{}), time.Minute, time.Minute, nil},
		{"asks for other names: rewritten", mustCSR(t, p256, &x509.CertificateRequest{URIs: []*url.URL{evil}, DNSNames: []string{"istiod"}}), time.Minute, time.Minute, nil},
		{"zero ttl: default capped by root", good, 0, time.Hour, nil},
		{"ttl capped by root", good, 48 * time.Hour, time.Hour, nil},
		{"garbage", []byte("not a csr"), time.Minute, 0, ErrBadCSR},
		{"bad signature", tampered, time.Minute, 0, ErrBadCSR},
		{"p224", mustCSR(t, p224, &x509.CertificateRequest{}), time.Minute, 0, ErrKeyType},
		{"rsa1024", mustCSR(t, rsa1024, &x509.CertificateRequest{}), time.Minute, 0, ErrKeyType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			chain, err := ca.SignCSR(tt.csr, testID, tt.ttl)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SignCSR() err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(chain) != 2 || !chain[1].Equal(ca.SigningCert()) {
				t.Fatalf("chain = %d certs, want leaf + root", len(chain))
			}
			leaf := chain[0]
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != testID.String() || len(leaf.DNSNames) != 0 {
				t.Fatalf("SANs = %v %v, want exactly %s", leaf.URIs, leaf.DNSNames, testID)
			}
			if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
				t.Fatalf("IsCA=%v KeyUsage=%v", leaf.IsCA, leaf.KeyUsage)
			}
			if len(leaf.ExtKeyUsage) != 2 {
				t.Fatalf("ExtKeyUsage = %v, want server+client", leaf.ExtKeyUsage)
			}
			if !leaf.NotBefore.Before(start) {
				t.Fatalf("NotBefore %v not backdated before %v", leaf.NotBefore, start)
			}
			got := leaf.NotAfter.Sub(start)
			if got < tt.wantTTL-2*time.Second || got > tt.wantTTL+2*time.Second {
				t.Fatalf("lifetime %v, want about %v", got, tt.wantTTL)
			}
			if leaf.NotAfter.After(ca.SigningCert().NotAfter) {
				t.Fatalf("leaf outlives its CA")
			}
			id, err := ca.Bundle().Verify(chain)
			if err != nil || id != testID {
				t.Fatalf("Bundle.Verify = %v, %v", id, err)
			}
		})
	}
}

func TestValidity(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ca := func(from, to time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: now.Add(from), NotAfter: now.Add(to)}
	}
	tests := []struct {
		name           string
		ttl            time.Duration
		chain          []*x509.Certificate
		wantNB, wantNA time.Time
		wantErr        error
	}{
		{"plain", time.Hour, []*x509.Certificate{ca(-time.Hour, 10*time.Hour)}, now.Add(-Backdate), now.Add(time.Hour), nil},
		{"capped by signer", 24 * time.Hour, []*x509.Certificate{ca(-time.Hour, 2*time.Hour)}, now.Add(-Backdate), now.Add(2 * time.Hour), nil},
		{"capped by root", 24 * time.Hour, []*x509.Certificate{ca(-time.Hour, 5*time.Hour), ca(-time.Hour, 3*time.Hour)}, now.Add(-Backdate), now.Add(3 * time.Hour), nil},
		{"backdate limited by young signer", time.Hour, []*x509.Certificate{ca(-time.Second, 5*time.Hour)}, now.Add(-time.Second), now.Add(time.Hour), nil},
		{"signer expired", time.Hour, []*x509.Certificate{ca(-2*time.Hour, -time.Hour)}, time.Time{}, time.Time{}, ErrSignerExpired},
		{"signer not yet valid", time.Hour, []*x509.Certificate{ca(time.Hour, 2*time.Hour)}, time.Time{}, time.Time{}, ErrSignerExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nb, na, err := validity(now, tt.ttl, tt.chain)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !nb.Equal(tt.wantNB) || !na.Equal(tt.wantNA) {
				t.Fatalf("validity = %v..%v, want %v..%v", nb, na, tt.wantNB, tt.wantNA)
			}
		})
	}
}

func TestLoadCAIntermediate(t *testing.T) {
	certPEM, keyPEM, chainPEM, rootPEM := newIntermediateCA(t, 30*time.Minute)
	ca, err := LoadCA(certPEM, keyPEM, chainPEM, rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := ca.Issue(testID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.Leaf.NotAfter; got.After(ca.SigningCert().NotAfter) {
		t.Fatalf("leaf NotAfter %v after intermediate's %v", got, ca.SigningCert().NotAfter)
	}
	// TLS chain: leaf + intermediate, root left out.
	if len(tc.Certificate) != 2 {
		t.Fatalf("tls chain has %d certs, want 2 (leaf, intermediate)", len(tc.Certificate))
	}
	id, err := ca.Bundle().VerifyRaw(tc.Certificate)
	if err != nil || id != testID {
		t.Fatalf("VerifyRaw = %v, %v", id, err)
	}
	key, _ := GenerateKey()
	csr, _ := NewCSR(key, testID)
	chain, err := ca.SignCSR(csr, testID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := ParseCertsPEM(rootPEM)
	if len(chain) != 3 || !chain[1].Equal(ca.SigningCert()) || !chain[2].Equal(roots[0]) {
		t.Fatalf("chain order wrong: want leaf, intermediate, root (got %d certs)", len(chain))
	}
	if string(ca.RootsPEM()) != string(rootPEM) {
		t.Fatalf("RootsPEM differs from root-cert.pem")
	}
}

func TestLoadCAErrors(t *testing.T) {
	certPEM, keyPEM, chainPEM, rootPEM := newIntermediateCA(t, time.Hour)
	otherCert, otherKey, _, otherRoot := newIntermediateCA(t, time.Hour)
	self, _ := NewSelfSignedCA("cluster.local", time.Hour)
	selfKey, _ := self.SigningKeyPEM()
	leafCA, _ := NewSelfSignedCA("cluster.local", time.Hour)
	leaf, _ := leafCA.Issue(testID, time.Hour)
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	leafKey, _ := EncodeKeyPEM(leaf.PrivateKey.(crypto.Signer))

	tests := []struct {
		name                string
		cert, key, ch, root []byte
		wantErr             bool
	}{
		{"intermediate ok", certPEM, keyPEM, chainPEM, rootPEM, false},
		{"intermediate without chain ok", certPEM, keyPEM, nil, rootPEM, false},
		{"self-signed istio-ca-secret layout", self.SigningCertPEM(), selfKey, nil, nil, false},
		{"key mismatch", certPEM, otherKey, chainPEM, rootPEM, true},
		{"wrong root", certPEM, keyPEM, nil, otherRoot, true},
		{"other intermediate with our root", otherCert, otherKey, nil, rootPEM, true},
		{"intermediate without root", certPEM, keyPEM, chainPEM, nil, true},
		{"not a CA", leafPEM, leafKey, nil, leafCA.RootsPEM(), true},
		{"empty cert", nil, keyPEM, nil, rootPEM, true},
		{"garbage key", certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil, rootPEM, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.cert, tt.key, tt.ch, tt.root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("LoadCA() err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestSelfSignedRoundTrip(t *testing.T) {
	ca, err := NewSelfSignedCA("example.org", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if o := ca.SigningCert().Subject.Organization; len(o) != 1 || o[0] != "example.org" {
		t.Fatalf("root organization = %v, want example.org", o)
	}
	keyPEM, err := ca.SigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(ca.SigningCertPEM(), keyPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := again.Issue(spiffe.Identity{TrustDomain: "example.org", Namespace: "a", ServiceAccount: "b"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Bundle().VerifyRaw(tc.Certificate); err != nil {
		t.Fatalf("cert from reloaded CA not trusted by original: %v", err)
	}
	if _, err := NewSelfSignedCA("x", 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func TestKeyPEMFormats(t *testing.T) {
	ec, _ := GenerateKey()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := EncodeKeyPEM(ec)
	tests := []struct {
		name    string
		in      []byte
		want    crypto.PublicKey
		wantErr bool
	}{
		{"pkcs8 ec", pkcs8, ec.Public(), false},
		{"sec1 ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ec.Public(), false},
		{"pkcs1 rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), rk.Public(), false},
		{"after a cert block", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), pkcs8...), ec.Public(), false},
		{"empty", nil, nil, true},
		{"not pem", []byte("hello"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !publicKeysEqual(k.Public(), tt.want) {
				t.Fatalf("parsed a different key")
			}
		})
	}
}

func TestCertsPEM(t *testing.T) {
	ca, _ := NewSelfSignedCA("cluster.local", time.Hour)
	tc, _ := ca.Issue(testID, time.Minute)
	chain := []*x509.Certificate{tc.Leaf, ca.SigningCert()}
	got, err := ParseCertsPEM(EncodeCertsPEM(chain))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Equal(chain[0]) || !got[1].Equal(chain[1]) {
		t.Fatalf("round trip changed the chain")
	}
	if _, err := ParseCertsPEM([]byte("junk")); !errors.Is(err, ErrNoPEM) {
		t.Fatalf("junk: err = %v, want ErrNoPEM", err)
	}
	key, _ := GenerateKey()
	csr, _ := NewCSR(key, testID)
	back, err := ParseCSRPEM(EncodeCSRPEM(csr))
	if err != nil || string(back) != string(csr) {
		t.Fatalf("CSR PEM round trip: %v", err)
	}
	parsed, err := ParseCSR(csr)
	if err != nil || len(parsed.URIs) != 1 || parsed.URIs[0].String() != testID.String() {
		t.Fatalf("NewCSR URIs = %v, err %v", parsed, err)
	}
}

func TestTLSCertificateKeyMismatch(t *testing.T) {
	ca, _ := NewSelfSignedCA("cluster.local", time.Hour)
	tc, _ := ca.Issue(testID, time.Minute)
	other, _ := GenerateKey()
	if _, err := TLSCertificate(other, []*x509.Certificate{tc.Leaf}); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if _, err := TLSCertificate(other, nil); err == nil {
		t.Fatal("empty chain accepted")
	}
}

func TestIssueServing(t *testing.T) {
	ca, _ := NewSelfSignedCA("cluster.local", time.Hour)
	tc, err := ca.IssueServing([]string{"istiod.istio-system.svc"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Leaf.Verify(x509.VerifyOptions{DNSName: "istiod.istio-system.svc", Roots: ca.Roots()}); err != nil {
		t.Fatalf("serving cert does not verify for its name: %v", err)
	}
	if len(tc.Leaf.URIs) != 0 {
		t.Fatalf("serving cert carries URI SANs %v", tc.Leaf.URIs)
	}
	if _, err := ca.IssueServing(nil, time.Hour); err == nil {
		t.Fatal("no DNS names accepted")
	}
}

// TestRotationBundle: a CA whose root-cert.pem holds the old and the new root
// signs with the new intermediate, returns both roots after its chain, and
// presents only leaf + intermediate in TLS; a bundle of both roots accepts
// certificates from either chain.
func TestRotationBundle(t *testing.T) {
	root1, err := NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root2, err := NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	int1, err := root1.NewIntermediate("intermediate1", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	int2, err := root2.NewIntermediate("intermediate2", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !int1.SigningCert().NotAfter.Equal(root1.SigningCert().NotAfter) {
		t.Fatalf("intermediate outlives its root: %v > %v", int1.SigningCert().NotAfter, root1.SigningCert().NotAfter)
	}
	rotating := int2.WithRoots(root1.SigningCert())
	// Through Istio's cacerts files, as istiod-lite loads them.
	c, k, ch, r, err := rotating.PluggedFiles()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(c, k, ch, r)
	if err != nil {
		t.Fatalf("LoadCA(rotation bundle): %v", err)
	}
	key, _ := GenerateKey()
	csr, _ := NewCSR(key, testID)
	chain, err := loaded.SignCSR(csr, testID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 4 || !chain[1].Equal(int2.SigningCert()) || !chain[2].Equal(root2.SigningCert()) || !chain[3].Equal(root1.SigningCert()) {
		t.Fatalf("chain = %d certs, want leaf, intermediate2, root2, root1", len(chain))
	}
	present, roots := SplitRoots(chain)
	if len(present) != 2 || len(roots) != 2 {
		t.Fatalf("SplitRoots = %d present, %d roots; want 2, 2", len(present), len(roots))
	}
	tc, err := TLSCertificate(key, chain)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificate) != 2 {
		t.Fatalf("TLS chain has %d certs, want leaf + intermediate2", len(tc.Certificate))
	}
	old, err := int1.Issue(testID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][][]byte{"new chain": tc.Certificate, "old chain": old.Certificate} {
		if id, err := loaded.Bundle().VerifyRaw(raw); err != nil || id != testID {
			t.Errorf("%s: VerifyRaw = %v, %v", name, id, err)
		}
	}
	// root2 alone does not accept the old chain.
	if _, err := root2.Bundle().VerifyRaw(old.Certificate); err == nil {
		t.Errorf("root2 alone accepted a certificate of root1's chain")
	}
	// A lone self-signed certificate is presented, not split off as a root.
	if p, r := SplitRoots(root1.Chain()); len(p) != 1 || len(r) != 0 {
		t.Errorf("SplitRoots(single root) = %d, %d; want 1, 0", len(p), len(r))
	}
}
