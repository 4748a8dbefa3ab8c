package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemECKey       = "EC PRIVATE KEY"
	pemRSAKey      = "RSA PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

// ErrNoPEM is returned when PEM input holds no block of the expected type.
var ErrNoPEM = errors.New("no PEM block of the expected type found")

// GenerateKey returns a new ECDSA P-256 private key, the mesh's key type.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return k, nil
}

// NewCSR returns a DER-encoded certificate signing request for id, signed by
// key. The identity is carried as the single URI SAN.
func NewCSR(key crypto.Signer, id spiffe.Identity) ([]byte, error) {
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %s: %w", id, err)
	}
	return der, nil
}

// EncodeCSRPEM encodes a DER CSR as PEM (the form IstioCertificateRequest.Csr carries).
func EncodeCSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

// ParseCSRPEM returns the DER of the first CERTIFICATE REQUEST block of data.
func ParseCSRPEM(data []byte) ([]byte, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == pemCSR || b.Type == "NEW CERTIFICATE REQUEST" {
			return b.Bytes, nil
		}
	}
	return nil, fmt.Errorf("parse CSR PEM: %w", ErrNoPEM)
}

// EncodeCertsPEM encodes certificates as concatenated PEM blocks, in order.
func EncodeCertsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.Raw})...)
	}
	return out
}

// ParseCertsPEM parses every CERTIFICATE block of data, in order. Blocks of
// other types are skipped; no certificate at all is an error.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse certificates PEM: %w", ErrNoPEM)
	}
	return out, nil
}

// EncodeKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParseKeyPEM parses the first private key block of data: PKCS#8, SEC1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"), as Istio's cacerts may hold any.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("parse private key PEM: %w", ErrNoPEM)
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case pemPrivateKey:
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case pemECKey:
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case pemRSAKey:
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", b.Type, err)
		}
		switch s := k.(type) {
		case *ecdsa.PrivateKey:
			return s, nil
		case *rsa.PrivateKey:
			return s, nil
		default:
			return nil, fmt.Errorf("private key of type %T is not supported (use ECDSA or RSA)", k)
		}
	}
}
