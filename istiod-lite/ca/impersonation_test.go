package ca

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// stubAuthenticator stands in for TokenReview: token -> caller as the API
// server would report it. (The real TokenReview path, with tokens bound to
// pods by a real kube-apiserver, is covered by TestKubeE2E.)
type stubAuthenticator map[string]Caller

func (a stubAuthenticator) Authenticate(_ context.Context, token string) (Caller, error) {
	c, ok := a[token]
	if !ok {
		return Caller{}, ErrTokenRejected
	}
	return c, nil
}

// A two-node cluster: node-a runs ztunnel-a, app/sleep, app/ztunnel (a
// workload whose service account is also called "ztunnel") and a finished
// app/job; node-b runs ztunnel-b, app/httpbin and other/sleep (the same
// service account name in another namespace).
func impersonationCluster() []runtime.Object {
	return []runtime.Object{
		pod("istio-system", "ztunnel-a", "ztunnel", "node-a", corev1.PodRunning),
		pod("istio-system", "ztunnel-b", "ztunnel", "node-b", corev1.PodRunning),
		pod("app", "sleep-1", "sleep", "node-a", corev1.PodRunning),
		pod("app", "fake-ztunnel", "ztunnel", "node-a", corev1.PodRunning),
		pod("app", "job-1", "job", "node-a", corev1.PodSucceeded),
		pod("app", "httpbin-1", "httpbin", "node-b", corev1.PodRunning),
		pod("other", "sleep-2", "sleep", "node-b", corev1.PodRunning),
	}
}

var impersonationCallers = map[string]Caller{
	"ztunnel-a":         {Namespace: "istio-system", ServiceAccount: "ztunnel", Node: "node-a", PodName: "ztunnel-a", PodUID: "uid-ztunnel-a"},
	"ztunnel-b":         {Namespace: "istio-system", ServiceAccount: "ztunnel", Node: "node-b", PodName: "ztunnel-b", PodUID: "uid-ztunnel-b"},
	"ztunnel-a-podonly": {Namespace: "istio-system", ServiceAccount: "ztunnel", PodName: "ztunnel-a", PodUID: "uid-ztunnel-a"},
	// A token of a ztunnel pod that was since replaced by another of the same name.
	"ztunnel-a-stale": {Namespace: "istio-system", ServiceAccount: "ztunnel", PodName: "ztunnel-a", PodUID: "uid-old"},
	// A token bound to a pod that no longer exists.
	"ztunnel-gone":   {Namespace: "istio-system", ServiceAccount: "ztunnel", PodName: "ztunnel-x", PodUID: "uid-ztunnel-x"},
	"ztunnel-nopod":  {Namespace: "istio-system", ServiceAccount: "ztunnel"},
	"fake-ztunnel-a": {Namespace: "app", ServiceAccount: "ztunnel", Node: "node-a", PodName: "fake-ztunnel", PodUID: "uid-fake-ztunnel"},
	"sleep-a":        {Namespace: "app", ServiceAccount: "sleep", Node: "node-a", PodName: "sleep-1", PodUID: "uid-sleep-1"},
	"httpbin-b":      {Namespace: "app", ServiceAccount: "httpbin", Node: "node-b", PodName: "httpbin-1", PodUID: "uid-httpbin-1"},
}

// TestImpersonationMatrix asks, as every caller, for every identity and
// checks each answer against the rule: a caller gets its own identity; only
// istio-system/ztunnel gets others, and only those of pods running on its
// own node (as its token says, or as its bound pod says if the token has no
// node).
func TestImpersonationMatrix(t *testing.T) {
	const td = "spiffe://cluster.local/ns/"
	ztunnel := td + "istio-system/sa/ztunnel"
	sleep, httpbin, otherSleep, job, appZtunnel := td+"app/sa/sleep", td+"app/sa/httpbin", td+"other/sa/sleep", td+"app/sa/job", td+"app/sa/ztunnel"
	requested := []string{"", ztunnel, sleep, httpbin, otherSleep, job, appZtunnel,
		td + "kube-system/sa/default", "spiffe://evil.org/ns/app/sa/sleep", "spiffe://cluster.local/ns/app/sa/sleep/x"}
	// allowed lists what each caller may get besides its own identity.
	allowed := map[string][]string{
		"ztunnel-a":         {sleep, appZtunnel},
		"ztunnel-a-podonly": {sleep, appZtunnel},
		"ztunnel-b":         {httpbin, otherSleep},
	}
	srv := newTestServer(t, stubAuthenticator(impersonationCallers), impersonationCluster()...)
	csr := csrPEM(t)
	for token, caller := range impersonationCallers {
		own := spiffe.Identity{TrustDomain: "cluster.local", Namespace: caller.Namespace, ServiceAccount: caller.ServiceAccount}.String()
		for _, want := range requested {
			ok := want == "" || want == own || slices.Contains(allowed[token], want)
			t.Run(token+"->"+want, func(t *testing.T) {
				ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
				resp, err := srv.CreateCertificate(ctx, request(csr, 3600, want))
				if !ok {
					code := status.Code(err)
					if code != codes.PermissionDenied && code != codes.InvalidArgument {
						t.Fatalf("%s asking for %q: code %v (%v), want PermissionDenied", token, want, code, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s asking for %q: %v", token, want, err)
				}
				id := leafIdentity(t, resp.CertChain)
				wantID := want
				if want == "" {
					wantID = own
				}
				if id != wantID {
					t.Fatalf("%s asking for %q got a certificate for %s", token, want, id)
				}
			})
		}
	}
}

// TestCSRNamesIgnored: whatever a CSR asks for — another service account's
// URI, DNS names, IPs, e-mail, CA:true — the certificate carries exactly the
// caller's identity and nothing else, and cannot sign.
func TestCSRNamesIgnored(t *testing.T) {
	srv := newTestServer(t, stubAuthenticator(impersonationCallers), impersonationCluster()...)
	csr := greedyCSRPEM(t)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer sleep-a"))
	resp, err := srv.CreateCertificate(ctx, request(csr, 0, ""))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certs.ParseCertsPEM([]byte(strings.Join(resp.CertChain, "")))
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/app/sa/sleep" {
		t.Fatalf("URI SANs %v, want only the caller's identity", leaf.URIs)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Fatalf("CSR names copied: DNS %v, IP %v, email %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatal("workload certificate can sign certificates")
	}
}

func newTestServer(t testing.TB, auth Authenticator, pods ...runtime.Object) *Server {
	t.Helper()
	ca, err := certs.NewSelfSignedCA("cluster.local", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(pods...)
	srv, err := NewServer(Options{CA: ca, Client: client, Authenticator: auth, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func leafIdentity(t *testing.T, chainPEM []string) string {
	t.Helper()
	chain, err := certs.ParseCertsPEM([]byte(strings.Join(chainPEM, "")))
	if err != nil {
		t.Fatal(err)
	}
	id, err := spiffe.FromCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}
