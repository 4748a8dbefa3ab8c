package spiffe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Identity
		wantErr error
	}{
		{"spiffe://cluster.local/ns/default/sa/sleep", Identity{"cluster.local", "default", "sleep"}, nil},
		{"spiffe://example.org/ns/a-b/sa/c.d", Identity{"example.org", "a-b", "c.d"}, nil},
		{"https://cluster.local/ns/default/sa/sleep", Identity{}, ErrNotSPIFFE},
		{"spiffe://cluster.local/ns/default", Identity{}, ErrMalformed},
		{"spiffe://cluster.local/ns//sa/x", Identity{}, ErrMalformed},
		{"spiffe:///ns/a/sa/b", Identity{}, ErrMalformed},
		{"spiffe://cluster.local/sa/x/ns/y", Identity{}, ErrMalformed},
		{"spiffe://cluster.local/ns/a/sa/b/extra", Identity{}, ErrMalformed},
		{"spiffe://cluster.local/ns/a/sa/b?x=1", Identity{}, ErrMalformed},
		{"spiffe://user@cluster.local/ns/a/sa/b", Identity{}, ErrMalformed},
		{"", Identity{}, ErrNotSPIFFE},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Parse(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
		if err == nil && got.URL().String() != tt.in {
			t.Errorf("URL() = %q, want %q", got.URL().String(), tt.in)
		}
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, cn string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) leaf(t *testing.T, uris []string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestBundleVerify(t *testing.T) {
	oldRoot, newRoot, other := newCA(t, "old"), newCA(t, "new"), newCA(t, "other")
	roots := x509.NewCertPool()
	roots.AddCert(oldRoot.cert)
	roots.AddCert(newRoot.cert)
	b := Bundle{TrustDomain: "cluster.local", Roots: roots}
	good := "spiffe://cluster.local/ns/default/sa/sleep"
	later := time.Now().Add(time.Hour)

	tests := []struct {
		name    string
		chain   []*x509.Certificate
		wantErr bool
		is      error
	}{
		{"old root", []*x509.Certificate{oldRoot.leaf(t, []string{good}, later)}, false, nil},
		{"new root", []*x509.Certificate{newRoot.leaf(t, []string{good}, later)}, false, nil},
		{"unknown CA", []*x509.Certificate{other.leaf(t, []string{good}, later)}, true, nil},
		{"expired", []*x509.Certificate{oldRoot.leaf(t, []string{good}, time.Now().Add(-time.Minute))}, true, nil},
		{"wrong trust domain", []*x509.Certificate{oldRoot.leaf(t, []string{"spiffe://evil.org/ns/default/sa/sleep"}, later)}, true, ErrWrongTrustDomain},
		{"no SAN", []*x509.Certificate{oldRoot.leaf(t, nil, later)}, true, ErrNoPeerIdentity},
		{"two SANs", []*x509.Certificate{oldRoot.leaf(t, []string{good, "spiffe://cluster.local/ns/x/sa/y"}, later)}, true, ErrManyIdentities},
		{"empty chain", nil, true, ErrNoPeerCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := b.Verify(tt.chain)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify() err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Verify() err = %v, want %v", err, tt.is)
			}
			if err == nil && id.String() != good {
				t.Fatalf("Verify() = %s, want %s", id, good)
			}
			if len(tt.chain) > 0 {
				raw := [][]byte{tt.chain[0].Raw}
				if _, errRaw := b.VerifyRaw(raw); (errRaw != nil) != tt.wantErr {
					t.Fatalf("VerifyRaw() err = %v, wantErr %v", errRaw, tt.wantErr)
				}
			}
		})
	}
}
