package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func request(t *testing.T, signAs spiffe.Identity, asked string) *pb.IstioCertificateRequest {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := certs.NewCSR(key, signAs)
	if err != nil {
		t.Fatal(err)
	}
	return &pb.IstioCertificateRequest{
		Csr: string(certs.EncodeCSRPEM(der)),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			identity.ImpersonatedIdentityKey: structpb.NewStringValue(asked),
		}},
	}
}

func TestCreateCertificate(t *testing.T) {
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ca: ca, ttl: time.Hour}
	id := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "waypoint"}

	resp, err := s.CreateCertificate(context.Background(), request(t, id, id.String()))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certs.ParseCertsPEM([]byte(resp.CertChain[0] + resp.CertChain[len(resp.CertChain)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.CertChain) < 2 {
		t.Fatalf("chain of %d certificates, want leaf and root (peers learn the root from it)", len(resp.CertChain))
	}
	got, err := spiffe.FromCertificate(chain[0])
	if err != nil || got != id {
		t.Fatalf("leaf identity %v (%v), want %v", got, err, id)
	}
	root := chain[len(chain)-1]
	if err := chain[0].CheckSignatureFrom(root); err != nil && len(resp.CertChain) == 2 {
		t.Fatalf("leaf not signed by the returned root: %v", err)
	}

	for name, asked := range map[string]string{"empty": "", "not spiffe": "default/waypoint"} {
		_, err := s.CreateCertificate(context.Background(), request(t, id, asked))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s identity: error %v, want InvalidArgument", name, err)
		}
	}
}
