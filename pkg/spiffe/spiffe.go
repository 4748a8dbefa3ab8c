package spiffe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of SPIFFE identities.
const Scheme = "spiffe"

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "cluster.local"

// Identity is a workload identity in the Istio form
// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String formats the identity as a SPIFFE URI.
func (i Identity) String() string {
	return Scheme + "://" + i.TrustDomain + "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount
}

// URL returns the identity as a URL, for use as a certificate URI SAN.
func (i Identity) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: i.TrustDomain, Path: "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount}
}

// IsZero reports whether the identity is empty.
func (i Identity) IsZero() bool { return i == Identity{} }

// Errors returned by this package; wrap-checked with errors.Is.
var (
	ErrNotSPIFFE        = errors.New("not a spiffe:// identity")
	ErrMalformed        = errors.New("malformed SPIFFE identity (want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)")
	ErrNoPeerIdentity   = errors.New("peer certificate carries no SPIFFE URI SAN")
	ErrManyIdentities   = errors.New("peer certificate carries more than one URI SAN")
	ErrWrongTrustDomain = errors.New("peer identity is from another trust domain")
	ErrNoPeerCert       = errors.New("peer presented no certificate")
)

// Parse parses a SPIFFE identity of the Istio form.
func Parse(s string) (Identity, error) {
	rest, ok := strings.CutPrefix(s, Scheme+"://")
	if !ok {
		return Identity{}, fmt.Errorf("parse %q: %w", s, ErrNotSPIFFE)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
		return Identity{}, fmt.Errorf("parse %q: %w", s, ErrMalformed)
	}
	id := Identity{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}
	if id.TrustDomain == "" || id.Namespace == "" || id.ServiceAccount == "" {
		return Identity{}, fmt.Errorf("parse %q: %w", s, ErrMalformed)
	}
	if strings.ContainsAny(rest, "?#%@: ") {
		return Identity{}, fmt.Errorf("parse %q: %w", s, ErrMalformed)
	}
	return id, nil
}

// FromCertificate returns the single SPIFFE identity in cert's URI SANs.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	switch len(cert.URIs) {
	case 0:
		return Identity{}, ErrNoPeerIdentity
	case 1:
		return Parse(cert.URIs[0].String())
	default:
		return Identity{}, ErrManyIdentities
	}
}

// Bundle is a set of trusted roots for one trust domain. More than one root may
// be trusted at once, so a root can be rotated without failing connections.
type Bundle struct {
	TrustDomain string
	Roots       *x509.CertPool
}

// Verify checks a peer chain (leaf first, as in tls.ConnectionState.PeerCertificates
// or the rawCerts of tls.Config.VerifyPeerCertificate) against the bundle and
// returns the leaf's identity. Intermediates in the chain are used for path
// building only.
func (b Bundle) Verify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoPeerCert
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         b.Roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return Identity{}, fmt.Errorf("verify peer certificate: %w", err)
	}
	id, err := FromCertificate(chain[0])
	if err != nil {
		return Identity{}, err
	}
	if b.TrustDomain != "" && id.TrustDomain != b.TrustDomain {
		return Identity{}, fmt.Errorf("peer %s, want trust domain %q: %w", id, b.TrustDomain, ErrWrongTrustDomain)
	}
	return id, nil
}

// VerifyRaw is Verify for DER-encoded certificates, suitable for
// tls.Config.VerifyPeerCertificate.
func (b Bundle) VerifyRaw(rawCerts [][]byte) (Identity, error) {
	chain := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return Identity{}, fmt.Errorf("parse peer certificate: %w", err)
		}
		chain = append(chain, c)
	}
	return b.Verify(chain)
}

// PeerIdentity returns the verified identity of the peer of a completed TLS
// handshake. The chain is verified again against b, so it is safe to use with
// connections whose tls.Config skipped Go's own verification.
func PeerIdentity(cs tls.ConnectionState, b Bundle) (Identity, error) {
	return b.Verify(cs.PeerCertificates)
}
