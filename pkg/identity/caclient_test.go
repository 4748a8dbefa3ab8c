package identity

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// recordingCA is a minimal IstioCertificateService that signs what it is
// asked for (the impersonated identity) and records what it received.
type recordingCA struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca *certs.CA

	mu        sync.Mutex
	tokens    []string
	clusterID []string
	imp       []string
	ttl       []int64
}

func (r *recordingCA) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	imp := req.GetMetadata().GetFields()[ImpersonatedIdentityKey].GetStringValue()
	r.mu.Lock()
	r.tokens = append(r.tokens, strings.Join(md.Get("authorization"), ","))
	r.clusterID = append(r.clusterID, strings.Join(md.Get("clusterid"), ","))
	r.imp = append(r.imp, imp)
	r.ttl = append(r.ttl, req.GetValidityDuration())
	r.mu.Unlock()
	if len(md.Get("authorization")) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	id, err := spiffe.Parse(imp)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	der, err := certs.ParseCSRPEM([]byte(req.GetCsr()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := r.ca.SignCSR(der, id, time.Duration(req.GetValidityDuration())*time.Second)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &pb.IstioCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(certs.EncodeCertsPEM([]*x509Cert{c})))
	}
	return resp, nil
}

func startRecordingCA(t *testing.T) (*recordingCA, string) {
	t.Helper()
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingCA{ca: ca}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterIstioCertificateServiceServer(gs, r)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return r, lis.Addr().String()
}

func TestCAClient(t *testing.T) {
	rec, addr := startRecordingCA(t)
	cc, err := DialCA(addr, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tokenPath := filepath.Join(t.TempDir(), "istio-token")
	if err := os.WriteFile(tokenPath, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := NewCAClient(CAClientOptions{Conn: cc, TokenPath: tokenPath, ClusterID: "Kubernetes", TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Options{Fetcher: client, TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	c, err := m.GetCertificate(context.Background(), idSleep)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := m.Bundle().VerifyRaw(c.Certificate); err != nil || id != idSleep {
		t.Fatalf("verify fetched cert: %v %v", id, err)
	}
	if life := time.Until(c.Leaf.NotAfter); life > 30*time.Minute || life < 29*time.Minute {
		t.Fatalf("lifetime %v, want the requested 30m", life)
	}

	// The token rotates: the next call reads the new one.
	if err := os.WriteFile(tokenPath, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetCertificate(context.Background(), idHttpbin); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"Bearer token-1", "Bearer token-2"}
	if strings.Join(rec.tokens, "|") != strings.Join(want, "|") {
		t.Fatalf("tokens sent = %q, want %q", rec.tokens, want)
	}
	if rec.imp[0] != idSleep.String() || rec.imp[1] != idHttpbin.String() {
		t.Fatalf("ImpersonatedIdentity sent = %q", rec.imp)
	}
	if rec.clusterID[0] != "Kubernetes" || rec.ttl[0] != 1800 {
		t.Fatalf("clusterid = %q, ttl = %v", rec.clusterID, rec.ttl)
	}
}

func TestCAClientErrors(t *testing.T) {
	_, addr := startRecordingCA(t)
	cc, err := DialCA(addr, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	key, _ := certs.GenerateKey()
	csr, _ := certs.NewCSR(key, idSleep)

	missing, _ := NewCAClient(CAClientOptions{Conn: cc, TokenPath: filepath.Join(t.TempDir(), "nope")})
	if _, err := missing.Fetch(context.Background(), idSleep, csr); err == nil || !strings.Contains(err.Error(), "istio-token") {
		t.Fatalf("missing token file: err = %v, want a hint about the token mount", err)
	}
	noToken, _ := NewCAClient(CAClientOptions{Conn: cc})
	if _, err := noToken.Fetch(context.Background(), idSleep, csr); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: err = %v, want Unauthenticated", err)
	}
	if _, err := NewCAClient(CAClientOptions{}); err == nil {
		t.Fatal("client without connection accepted")
	}
	if _, err := DialCA(addr, []byte("not pem"), ""); err == nil {
		t.Fatal("bad root PEM accepted")
	}
}

// TestRotationRealTime holds a 3 s certificate for 9 s with the local CA: it
// must always be valid and must have been renewed several times.
func TestRotationRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 9 s")
	}
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Options{Fetcher: LocalFetcher{CA: ca, TTL: 3 * time.Second}, TrustDomain: "cluster.local", Roots: ca.Chain()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	serials := map[string]bool{}
	end := time.Now().Add(9 * time.Second)
	for time.Now().Before(end) {
		c, err := m.GetCertificate(context.Background(), idSleep)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if !now.Before(c.Leaf.NotAfter) {
			t.Fatalf("served an expired certificate (NotAfter %v, now %v)", c.Leaf.NotAfter, now)
		}
		if _, err := m.Bundle().VerifyRaw(c.Certificate); err != nil {
			t.Fatalf("served certificate does not verify: %v", err)
		}
		serials[c.Leaf.SerialNumber.String()] = true
		time.Sleep(50 * time.Millisecond)
	}
	// Renewal every ~1.5 s over 9 s: about 6 certificates; 4 proves rotation.
	if len(serials) < 4 {
		t.Fatalf("saw %d certificates in 9 s with a 3 s TTL, want >= 4", len(serials))
	}
	if m.Stats().Failures != 0 {
		t.Fatalf("failures = %d", m.Stats().Failures)
	}
}
