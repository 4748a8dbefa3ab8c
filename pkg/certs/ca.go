package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// DefaultWorkloadTTL is the lifetime of a workload certificate when none is asked for.
const DefaultWorkloadTTL = 24 * time.Hour

// Backdate is how far before "now" issued certificates start, to tolerate
// clock skew between the CA and the peers that verify them.
const Backdate = time.Minute

// Errors returned by this package; match with errors.Is.
var (
	ErrBadCSR        = errors.New("invalid certificate signing request")
	ErrKeyType       = errors.New("unsupported public key (use ECDSA P-256/P-384 or RSA >= 2048 bits)")
	ErrSignerExpired = errors.New("signing CA certificate is expired or not yet valid; rotate the CA (istio-ca-secret or cacerts)")
	ErrBadCA         = errors.New("invalid CA material")
)

// CA signs workload certificates. It is immutable after construction and safe
// for concurrent use.
type CA struct {
	trustDomain string
	key         crypto.Signer
	// chain is the signing certificate first, then intermediates, then the
	// root it chains to, last.
	chain []*x509.Certificate
	// roots is every trusted root (root-cert.pem may hold more than one
	// during a root rotation).
	roots []*x509.Certificate
}

// NewSelfSignedCA creates a CA with a new self-signed ECDSA P-256 root whose
// organization is the trust domain, valid for ttl.
func NewSelfSignedCA(trustDomain string, ttl time.Duration) (*CA, error) {
	if trustDomain == "" {
		trustDomain = spiffe.DefaultTrustDomain
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("self-signed CA for %q: ttl %v must be positive", trustDomain, ttl)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("self-signed CA for %q: %w", trustDomain, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signed CA for %q: create root: %w", trustDomain, err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("self-signed CA for %q: parse root: %w", trustDomain, err)
	}
	return &CA{trustDomain: trustDomain, key: key, chain: []*x509.Certificate{root}, roots: []*x509.Certificate{root}}, nil
}

// LoadCA loads a signing CA in Istio's cacerts layout: certPEM (ca-cert.pem)
// is the signing certificate, keyPEM (ca-key.pem) its key, certChainPEM
// (cert-chain.pem) the chain from the signing certificate towards the root and
// rootPEM (root-cert.pem) the trusted root(s). certChainPEM may be empty when
// the signing certificate is issued directly by the root; rootPEM may be empty
// when the signing certificate is itself a self-signed root (Istio's
// istio-ca-secret layout).
//
// The loaded CA has no trust domain: its Bundle accepts any trust domain
// unless the caller sets one.
func LoadCA(certPEM, keyPEM, certChainPEM, rootPEM []byte) (*CA, error) {
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: ca-cert.pem: %w", err)
	}
	signer := certs[0]
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: ca-key.pem: %w", err)
	}
	if !publicKeysEqual(signer.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: ca-key.pem does not match ca-cert.pem: %w", ErrBadCA)
	}
	if !signer.IsCA || (signer.KeyUsage != 0 && signer.KeyUsage&x509.KeyUsageCertSign == 0) {
		return nil, fmt.Errorf("load CA: ca-cert.pem is not a CA certificate allowed to sign certificates: %w", ErrBadCA)
	}
	var roots []*x509.Certificate
	if len(bytes.TrimSpace(rootPEM)) > 0 {
		if roots, err = ParseCertsPEM(rootPEM); err != nil {
			return nil, fmt.Errorf("load CA: root-cert.pem: %w", err)
		}
	} else {
		if signer.CheckSignatureFrom(signer) != nil {
			return nil, fmt.Errorf("load CA: root-cert.pem is empty and ca-cert.pem is not self-signed: %w", ErrBadCA)
		}
		roots = []*x509.Certificate{signer}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if len(bytes.TrimSpace(certChainPEM)) > 0 {
		chain, err := ParseCertsPEM(certChainPEM)
		if err != nil {
			return nil, fmt.Errorf("load CA: cert-chain.pem: %w", err)
		}
		for _, c := range chain {
			inter.AddCert(c)
		}
	}
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("load CA: ca-cert.pem does not chain to root-cert.pem (check cert-chain.pem and expiry): %w", err)
	}
	return &CA{key: key, chain: chains[0], roots: roots}, nil
}

// TrustDomain is the trust domain the CA was created for ("" for a loaded CA).
func (ca *CA) TrustDomain() string { return ca.trustDomain }

// SigningCert is the certificate that signs workload certificates.
func (ca *CA) SigningCert() *x509.Certificate { return ca.chain[0] }

// SigningCertPEM is SigningCert in PEM (ca-cert.pem).
func (ca *CA) SigningCertPEM() []byte { return EncodeCertsPEM(ca.chain[:1]) }

// SigningKeyPEM is the signing key in PKCS#8 PEM (ca-key.pem).
func (ca *CA) SigningKeyPEM() ([]byte, error) { return EncodeKeyPEM(ca.key) }

// Chain is the signing certificate followed by its issuers up to the root (last).
func (ca *CA) Chain() []*x509.Certificate { return append([]*x509.Certificate(nil), ca.chain...) }

// RootsPEM returns every trusted root in PEM (root-cert.pem).
func (ca *CA) RootsPEM() []byte { return EncodeCertsPEM(ca.roots) }

// Roots returns a new pool holding every trusted root.
func (ca *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range ca.roots {
		p.AddCert(r)
	}
	return p
}

// Bundle is the trust bundle for verifying peers issued by this CA.
func (ca *CA) Bundle() spiffe.Bundle {
	return spiffe.Bundle{TrustDomain: ca.trustDomain, Roots: ca.Roots()}
}

// CheckPublicKey accepts the key types the mesh signs: ECDSA P-256 or P-384,
// or RSA of at least 2048 bits.
func CheckPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s: %w", k.Curve.Params().Name, ErrKeyType)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return fmt.Errorf("RSA key of %d bits: %w", k.N.BitLen(), ErrKeyType)
	default:
		return fmt.Errorf("key type %T: %w", pub, ErrKeyType)
	}
}

// ParseCSR parses a DER CSR and checks its signature and key type.
func ParseCSR(csrDER []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: parse: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	return csr, nil
}

// SignCSR signs the CSR's public key for id, whatever names the CSR asks for:
// the certificate carries exactly one URI SAN, id. ttl <= 0 means
// DefaultWorkloadTTL; the lifetime never exceeds the CA chain's. The result is
// the leaf first, then the intermediates, then the root last (as Istio returns
// it), followed by the CA's other trusted roots (root-cert.pem may hold
// several during a root rotation).
func (ca *CA) SignCSR(csrDER []byte, id spiffe.Identity, ttl time.Duration) ([]*x509.Certificate, error) {
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return nil, err
	}
	return ca.sign(csr.PublicKey, id, ttl, time.Now())
}

// Issue generates a key and a certificate for id, for local mode, tests and
// benchmarks.
func (ca *CA) Issue(id spiffe.Identity, ttl time.Duration) (*tls.Certificate, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	chain, err := ca.sign(key.Public(), id, ttl, time.Now())
	if err != nil {
		return nil, err
	}
	return TLSCertificate(key, chain)
}

// IssueServing issues a TLS server certificate for DNS names (istiod-lite's
// own certificate on port 15012, which ztunnel verifies against the mesh
// root). The chain is leaf then intermediates; the root is left out.
func (ca *CA) IssueServing(dnsNames []string, ttl time.Duration) (*tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("serving certificate: no DNS names")
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	chain, err := ca.signTemplate(key.Public(), ttl, time.Now(), func(c *x509.Certificate) {
		c.DNSNames = append([]string(nil), dnsNames...)
	})
	if err != nil {
		return nil, fmt.Errorf("serving certificate for %v: %w", dnsNames, err)
	}
	return TLSCertificate(key, chain)
}

func (ca *CA) sign(pub any, id spiffe.Identity, ttl time.Duration, now time.Time) ([]*x509.Certificate, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("sign: empty identity")
	}
	chain, err := ca.signTemplate(pub, ttl, now, func(c *x509.Certificate) { c.URIs = []*url.URL{id.URL()} })
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", id, err)
	}
	return chain, nil
}

// signTemplate signs a leaf for pub whose names are set by names.
func (ca *CA) signTemplate(pub any, ttl time.Duration, now time.Time, names func(*x509.Certificate)) ([]*x509.Certificate, error) {
	if ttl <= 0 {
		ttl = DefaultWorkloadTTL
	}
	notBefore, notAfter, err := validity(now, ttl, ca.chain)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	names(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.chain[0], pub, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	out := append([]*x509.Certificate{leaf}, ca.chain...)
	// Every other trusted root follows the chain's own root, so the response
	// carries the whole distributed trust bundle (old and new roots during a
	// root rotation), as istiod appends root-cert.pem.
	for _, r := range ca.roots {
		if !slices.ContainsFunc(out, r.Equal) {
			out = append(out, r)
		}
	}
	return out, nil
}

// SplitRoots splits a chain as the CA returns it (leaf, intermediates, then
// the trusted roots) into the certificates to present and the trailing
// self-signed roots. A chain without a trailing self-signed root has no roots.
func SplitRoots(chain []*x509.Certificate) (present, roots []*x509.Certificate) {
	n := len(chain)
	for n > 1 && isSelfSigned(chain[n-1]) {
		n--
	}
	return chain[:n], chain[n:]
}

// validity computes a leaf's NotBefore/NotAfter: backdated by Backdate (but
// not before the signer's start) and ending after ttl or when the first
// certificate of the CA chain expires, whichever is sooner.
func validity(now time.Time, ttl time.Duration, chain []*x509.Certificate) (notBefore, notAfter time.Time, err error) {
	notBefore = now.Add(-Backdate)
	notAfter = now.Add(ttl)
	for _, c := range chain {
		if now.Before(c.NotBefore) || !now.Before(c.NotAfter) {
			return time.Time{}, time.Time{}, ErrSignerExpired
		}
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
		if notBefore.Before(c.NotBefore) {
			notBefore = c.NotBefore
		}
	}
	return notBefore, notAfter, nil
}

// TLSCertificate assembles a tls.Certificate from a key and a chain (leaf
// first). Trailing self-signed roots are left out: peers have them already.
func TLSCertificate(key crypto.Signer, chain []*x509.Certificate) (*tls.Certificate, error) {
	if len(chain) == 0 {
		return nil, errors.New("tls certificate: empty chain")
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("tls certificate: key does not match the leaf certificate")
	}
	send, _ := SplitRoots(chain)
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range send {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// NewIntermediate issues a new intermediate signing CA under ca (ECDSA
// P-256, valid for ttl but not beyond ca's chain). The result trusts ca's
// roots. It is how a plugged-in CA (cacerts) is made for tests and tools.
func (ca *CA) NewIntermediate(commonName string, ttl time.Duration) (*CA, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("intermediate %q: %w", commonName, err)
	}
	notBefore, notAfter, err := validity(time.Now(), ttl, ca.chain)
	if err != nil {
		return nil, fmt.Errorf("intermediate %q: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: ca.chain[0].Subject.Organization, CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.chain[0], key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("intermediate %q: %w", commonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("intermediate %q: parse: %w", commonName, err)
	}
	return &CA{
		trustDomain: ca.trustDomain, key: key,
		chain: append([]*x509.Certificate{c}, ca.chain...),
		roots: append([]*x509.Certificate(nil), ca.roots...),
	}, nil
}

// WithRoots returns a copy of ca that also trusts (and distributes) roots,
// e.g. the old and the new root during a root rotation.
func (ca *CA) WithRoots(roots ...*x509.Certificate) *CA {
	out := *ca
	out.chain = append([]*x509.Certificate(nil), ca.chain...)
	out.roots = append([]*x509.Certificate(nil), ca.roots...)
	for _, r := range roots {
		if !slices.ContainsFunc(out.roots, r.Equal) {
			out.roots = append(out.roots, r)
		}
	}
	return &out
}

// RootList returns every trusted root.
func (ca *CA) RootList() []*x509.Certificate { return append([]*x509.Certificate(nil), ca.roots...) }

// PluggedFiles returns ca in Istio's cacerts layout: ca-cert.pem, ca-key.pem,
// cert-chain.pem (the signing certificate up to its root) and root-cert.pem
// (every trusted root).
func (ca *CA) PluggedFiles() (certPEM, keyPEM, chainPEM, rootPEM []byte, err error) {
	keyPEM, err = ca.SigningKeyPEM()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return ca.SigningCertPEM(), keyPEM, EncodeCertsPEM(ca.chain), ca.RootsPEM(), nil
}
