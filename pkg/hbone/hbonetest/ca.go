package hbonetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// CA is a self-signed root that issues SPIFFE leaf certificates.
type CA struct {
	TrustDomain string
	Cert        *x509.Certificate
	Key         *ecdsa.PrivateKey
}

// NewCA creates a root CA for trustDomain, valid for a day.
func NewCA(trustDomain string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"hbonetest"}, CommonName: "hbonetest root " + trustDomain},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{TrustDomain: trustDomain, Cert: cert, Key: key}, nil
}

// MustCA is NewCA failing tb on error.
func MustCA(tb testing.TB, trustDomain string) *CA {
	tb.Helper()
	ca, err := NewCA(trustDomain)
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err)
	}
	return n
}

// Issue signs an SVID for id valid from a minute ago for ttl. A negative ttl
// gives an already expired certificate.
func (ca *CA) Issue(id spiffe.Identity, ttl time.Duration) (*tls.Certificate, error) {
	now := time.Now()
	nb := now.Add(-time.Minute)
	if ttl < 0 {
		nb = now.Add(2 * ttl)
	}
	return ca.IssueValidity(id, nb, now.Add(ttl))
}

// IssueValidity signs an SVID for id valid from notBefore to notAfter.
func (ca *CA) IssueValidity(id spiffe.Identity, notBefore, notAfter time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate for %s: %w", id, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// MustIssue is Issue failing tb on error.
func (ca *CA) MustIssue(tb testing.TB, id spiffe.Identity, ttl time.Duration) *tls.Certificate {
	tb.Helper()
	c, err := ca.Issue(id, ttl)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Bundle is the trust bundle holding this CA's root.
func (ca *CA) Bundle() spiffe.Bundle {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return spiffe.Bundle{TrustDomain: ca.TrustDomain, Roots: pool}
}

// Identity is a helper for spiffe.Identity{ca.TrustDomain, ns, sa}.
func (ca *CA) Identity(ns, sa string) spiffe.Identity {
	return spiffe.Identity{TrustDomain: ca.TrustDomain, Namespace: ns, ServiceAccount: sa}
}

// Certs is an in-memory hbone.CertSource.
type Certs struct {
	mu sync.Mutex
	m  map[spiffe.Identity]*tls.Certificate
}

// Set stores the certificate presented for id.
func (c *Certs) Set(id spiffe.Identity, cert *tls.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[spiffe.Identity]*tls.Certificate)
	}
	c.m[id] = cert
}

// ClientCertificate returns the certificate stored for id.
func (c *Certs) ClientCertificate(_ context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cert, ok := c.m[id]
	if !ok {
		return nil, fmt.Errorf("no certificate for %s", id)
	}
	return cert, nil
}
