package hbone

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// ALPN is the only application protocol HBONE speaks.
const ALPN = "h2"

// serverTLSConfig requires a client certificate chaining to the bundle and
// TLS 1.3 with ALPN h2. Verification is the SPIFFE one (chain + trust
// domain), not a host name check.
func serverTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), bundle func() spiffe.Bundle) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPN},
		ClientAuth:             tls.RequireAnyClientCert,
		GetCertificate:         getCert,
		SessionTicketsDisabled: true,
		// Full-size records from the start: tunnels are bulk as often as
		// interactive, and each record costs a syscall and an AEAD call.
		DynamicRecordSizingDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := bundle().Verify(cs.PeerCertificates); err != nil {
				return fmt.Errorf("client certificate: %w", err)
			}
			return nil
		},
	}
}

// clientTLSConfig presents cert and verifies the server against the bundle
// and, if any are given, the expected identities.
func clientTLSConfig(cert *tls.Certificate, bundle spiffe.Bundle, expect []spiffe.Identity) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		NextProtos:                  []string{ALPN},
		DynamicRecordSizingDisabled: true,
		// Go's host name verification does not apply to SPIFFE identities;
		// VerifyConnection checks the chain and identity instead.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := bundle.Verify(cs.PeerCertificates)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if len(expect) > 0 && !slices.Contains(expect, id) {
				return fmt.Errorf("server is %s, want one of %v: %w", id, expect, ErrPeerIdentity)
			}
			return nil
		},
	}
}
