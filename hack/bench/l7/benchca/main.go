package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:15010", "plaintext gRPC address")
	trustDomain := flag.String("trust-domain", spiffe.DefaultTrustDomain, "SPIFFE trust domain of the root")
	flag.Parse()
	if err := run(*addr, *trustDomain); err != nil {
		fmt.Fprintln(os.Stderr, "benchca:", err)
		os.Exit(1)
	}
}

func run(addr, trustDomain string) error {
	ca, err := certs.NewSelfSignedCA(trustDomain, 24*time.Hour)
	if err != nil {
		return fmt.Errorf("self-signed CA: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	gs := grpc.NewServer()
	pb.RegisterIstioCertificateServiceServer(gs, &server{ca: ca, ttl: time.Hour})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		gs.Stop()
	}()
	if err := gs.Serve(ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// server signs every CSR for the identity the request names.
type server struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca  *certs.CA
	ttl time.Duration
}

// CreateCertificate implements IstioCertificateService.
func (s *server) CreateCertificate(_ context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	want := req.GetMetadata().GetFields()[identity.ImpersonatedIdentityKey].GetStringValue()
	id, err := spiffe.Parse(want)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "impersonated identity %q: %v", want, err)
	}
	der, err := certs.ParseCSRPEM([]byte(req.GetCsr()))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	chain, err := s.ca.SignCSR(der, id, s.ttl)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign: %v", err)
	}
	resp := &pb.IstioCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(certs.EncodeCertsPEM([]*x509.Certificate{c})))
	}
	return resp, nil
}
