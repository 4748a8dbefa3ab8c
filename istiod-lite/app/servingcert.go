package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

// servingCertTTL is the lifetime of istiod-lite's own 15012 certificate; it
// is re-issued after half of it.
const servingCertTTL = 24 * time.Hour

// servingCert issues the TLS serving certificate from the mesh CA on demand
// and re-issues it once past half its lifetime (GetCertificate is asked on
// every handshake).
type servingCert struct {
	ca    *certs.CA
	names []string
	now   func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

func newServingCert(ca *certs.CA, namespace string, now func() time.Time) *servingCert {
	return &servingCert{ca: ca, now: now, names: []string{
		"istiod-lite." + namespace + ".svc",
		"istiod-lite." + namespace + ".svc.cluster.local",
		"istiod-lite",
	}}
}

// GetCertificate implements tls.Config.GetCertificate.
func (s *servingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && s.now().Before(s.renewAt) {
		return s.cert, nil
	}
	c, err := s.ca.IssueServing(s.names, servingCertTTL)
	if err != nil {
		if s.cert != nil {
			return s.cert, nil // keep serving the old one until it expires
		}
		return nil, fmt.Errorf("issue serving certificate for %v: %w", s.names, err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse serving certificate: %w", err)
		}
	}
	s.cert = c
	s.renewAt = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return c, nil
}
