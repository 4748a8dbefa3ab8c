package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Metadata names understood by the Istio CA.
const (
	// ImpersonatedIdentityKey asks the CA for a pod's identity on ztunnel's node.
	ImpersonatedIdentityKey = "ImpersonatedIdentity"
	// clusterIDHeader is the gRPC header istiod reads the caller's cluster from.
	clusterIDHeader = "clusterid"
)

// CAClientOptions configures a CAClient.
type CAClientOptions struct {
	// Conn is a connection to the CA (see DialCA). Required.
	Conn grpc.ClientConnInterface
	// TokenPath is the projected ServiceAccount token (audience istio-ca),
	// re-read on every call since the kubelet rotates it. "" sends no token.
	TokenPath string
	// ClusterID, when set, is sent in the clusterid header.
	ClusterID string
	// TTL is the requested validity; 0 leaves it to the CA.
	TTL time.Duration
}

// CAClient fetches certificates from an IstioCertificateService.
type CAClient struct {
	o      CAClientOptions
	client pb.IstioCertificateServiceClient
}

var _ Fetcher = (*CAClient)(nil)

// NewCAClient builds a CAClient.
func NewCAClient(o CAClientOptions) (*CAClient, error) {
	if o.Conn == nil {
		return nil, errors.New("CA client: no connection")
	}
	return &CAClient{o: o, client: pb.NewIstioCertificateServiceClient(o.Conn)}, nil
}

// Fetch implements Fetcher: it sends the CSR with ImpersonatedIdentity = id.
func (c *CAClient) Fetch(ctx context.Context, id spiffe.Identity, csrDER []byte) ([]*x509.Certificate, error) {
	var kv []string
	if c.o.TokenPath != "" {
		tok, err := os.ReadFile(c.o.TokenPath)
		if err != nil {
			return nil, fmt.Errorf("read CA token %s (is the istio-token projected volume mounted?): %w", c.o.TokenPath, err)
		}
		t := strings.TrimSpace(string(tok))
		if t == "" {
			return nil, fmt.Errorf("CA token file %s is empty", c.o.TokenPath)
		}
		kv = append(kv, "authorization", "Bearer "+t)
	}
	if c.o.ClusterID != "" {
		kv = append(kv, clusterIDHeader, c.o.ClusterID)
	}
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	req := &pb.IstioCertificateRequest{
		Csr:              string(certs.EncodeCSRPEM(csrDER)),
		ValidityDuration: int64(c.o.TTL / time.Second),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			ImpersonatedIdentityKey: structpb.NewStringValue(id.String()),
		}},
	}
	resp, err := c.client.CreateCertificate(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("CreateCertificate: %w", err)
	}
	// One certificate per entry (Istio), but tolerate concatenated PEM.
	chain, err := certs.ParseCertsPEM([]byte(strings.Join(resp.GetCertChain(), "\n")))
	if err != nil {
		return nil, fmt.Errorf("CreateCertificate response: %w", err)
	}
	return chain, nil
}

// DialCA connects to the CA at addr (host:port). With rootPEM it uses TLS
// verified against those roots (port 15012, root from the istio-ca-root-cert
// ConfigMap) and serverName (default the host of addr); without, plaintext
// (port 15010, local and development only).
func DialCA(addr string, rootPEM []byte, serverName string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if len(rootPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rootPEM) {
			return nil, errors.New("CA root certificate: no PEM certificate found (check the istio-ca-root-cert mount)")
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("dial CA %s: %w", addr, err)
	}
	return cc, nil
}

// LocalFetcher signs with an in-process CA (--ca local, tests, benchmarks).
type LocalFetcher struct {
	CA  *certs.CA
	TTL time.Duration // 0 = certs.DefaultWorkloadTTL
}

var _ Fetcher = LocalFetcher{}

// Fetch implements Fetcher.
func (l LocalFetcher) Fetch(ctx context.Context, id spiffe.Identity, csrDER []byte) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.CA.SignCSR(csrDER, id, l.TTL)
}
