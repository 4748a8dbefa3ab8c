package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// FuzzCreateCertificate sends arbitrary CSRs, validity durations, tokens
// and impersonated identities to CreateCertificate: it must never panic or
// answer with an internal error; a refusal must be Unauthenticated,
// PermissionDenied or InvalidArgument; an issued certificate must carry
// exactly one identity the caller may have, the CSR's public key, no other
// names, no CA powers, and a lifetime within MaxTTL.
func FuzzCreateCertificate(f *testing.F) {
	good, greedy := csrPEM(f), greedyCSRPEM(f)
	der, _ := certs.ParseCSRPEM([]byte(good))
	for _, s := range []struct {
		csr, token, impersonate string
		ttl                     int64
	}{
		{good, "sleep-a", "", 3600},
		{greedy, "sleep-a", "spiffe://cluster.local/ns/app/sa/httpbin", 0},
		{good, "ztunnel-a", "spiffe://cluster.local/ns/app/sa/sleep", 1 << 40},
		{good, "ztunnel-b", "spiffe://cluster.local/ns/app/sa/sleep", 60},
		{good, "ztunnel-a-podonly", "spiffe://cluster.local/ns/app/sa/ztunnel", -1},
		{string(der), "sleep-a", "", 0}, // DER, not PEM
		{strings.Replace(good, "CERTIFICATE REQUEST", "CERTIFICATE", 2), "httpbin-b", "", 0},
		{good[:len(good)/2], "sleep-a", "", 0},
		{"", "nobody", "", 0},
	} {
		f.Add(s.csr, s.ttl, s.token, s.impersonate)
	}
	srv := newTestServer(f, stubAuthenticator(impersonationCallers), impersonationCluster()...)
	maxTTL := srv.o.MaxTTL
	mayHave := map[string][]string{
		"ztunnel-a":         {"app/sleep", "app/ztunnel"},
		"ztunnel-a-podonly": {"app/sleep", "app/ztunnel"},
		"ztunnel-b":         {"app/httpbin", "other/sleep"},
	}
	f.Fuzz(func(t *testing.T, csr string, ttl int64, token, impersonate string) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		start := time.Now()
		resp, err := srv.CreateCertificate(ctx, request(csr, ttl, impersonate))
		if err != nil {
			switch code := status.Code(err); code {
			case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument:
			default:
				t.Fatalf("refused with %v: %v", code, err)
			}
			return
		}
		caller, ok := impersonationCallers[token]
		if !ok {
			t.Fatalf("unknown token %q got a certificate", token)
		}
		chain, err := certs.ParseCertsPEM([]byte(strings.Join(resp.CertChain, "")))
		if err != nil {
			t.Fatal(err)
		}
		leaf := chain[0]
		id, err := spiffe.FromCertificate(leaf)
		if err != nil {
			t.Fatalf("issued certificate without one SPIFFE identity: %v", err)
		}
		own := caller.Namespace + "/" + caller.ServiceAccount
		got := id.Namespace + "/" + id.ServiceAccount
		if id.TrustDomain != "cluster.local" || (got != own && !slices.Contains(mayHave[token], got)) {
			t.Fatalf("%s (%s) got a certificate for %s", token, own, id)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
			t.Fatalf("issued certificate has extra names or CA powers: %+v", leaf)
		}
		if life := leaf.NotAfter.Sub(start); life > maxTTL+time.Minute {
			t.Fatalf("lifetime %v over MaxTTL %v", life, maxTTL)
		}
		der, err := certs.ParseCSRPEM([]byte(csr))
		if err != nil {
			t.Fatalf("issued for a CSR that does not parse: %v", err)
		}
		req, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := x509.MarshalPKIXPublicKey(req.PublicKey)
		have, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
		if !bytes.Equal(want, have) {
			t.Fatal("certificate is not for the CSR's key")
		}
	})
}

// greedyCSRPEM is a CSR asking for much more than an identity: another
// service account's URI, DNS names, an IP, an e-mail address and CA:true.
func greedyCSRPEM(tb testing.TB) string {
	tb.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "istiod.istio-system.svc"},
		URIs:            []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/app/sa/httpbin"}},
		DNSNames:        []string{"istiod.istio-system.svc", "*.cluster.local"},
		IPAddresses:     []net.IP{net.ParseIP("10.96.0.1")},
		EmailAddresses:  []string{"root@cluster.local"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	return string(certs.EncodeCSRPEM(der))
}
