package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func pod(ns, name, sa, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func saUser(ns, sa string) string { return "system:serviceaccount:" + ns + ":" + sa }

// tokens known to the fake TokenReview.
var fakeTokens = map[string]authnv1.TokenReviewStatus{
	"ztunnel-a": {Authenticated: true, Audiences: []string{"istio-ca"}, User: authnv1.UserInfo{
		Username: saUser("istio-system", "ztunnel"),
		Extra:    map[string]authnv1.ExtraValue{ExtraNodeName: {"node-a"}, ExtraPodName: {"ztunnel-a"}, ExtraPodUID: {"uid-ztunnel-a"}},
	}},
	// An API server that does not put the node name in tokens.
	"ztunnel-a-podonly": {Authenticated: true, Audiences: []string{"istio-ca"}, User: authnv1.UserInfo{
		Username: saUser("istio-system", "ztunnel"),
		Extra:    map[string]authnv1.ExtraValue{ExtraPodName: {"ztunnel-a"}, ExtraPodUID: {"uid-ztunnel-a"}},
	}},
	"ztunnel-unbound": {Authenticated: true, Audiences: []string{"istio-ca"}, User: authnv1.UserInfo{Username: saUser("istio-system", "ztunnel")}},
	"sleep-a": {Authenticated: true, Audiences: []string{"istio-ca"}, User: authnv1.UserInfo{
		Username: saUser("app", "sleep"), Extra: map[string]authnv1.ExtraValue{ExtraNodeName: {"node-a"}},
	}},
	"wrong-audience": {Authenticated: true, Audiences: []string{"api"}, User: authnv1.UserInfo{Username: saUser("app", "sleep")}},
	"user":           {Authenticated: true, Audiences: []string{"istio-ca"}, User: authnv1.UserInfo{Username: "alice"}},
	"expired":        {Authenticated: false, Error: "token has expired"},
}

func newFakeClient(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		st, ok := fakeTokens[tr.Spec.Token]
		if !ok {
			st = authnv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		}
		tr.Status = st
		return true, tr, nil
	})
	return c
}

func testPods() []runtime.Object {
	return []runtime.Object{
		pod("istio-system", "ztunnel-a", "ztunnel", "node-a", corev1.PodRunning),
		pod("app", "sleep-1", "sleep", "node-a", corev1.PodRunning),
		pod("app", "httpbin-1", "httpbin", "node-b", corev1.PodRunning),
		pod("app", "job-1", "job", "node-a", corev1.PodSucceeded),
	}
}

type testEnv struct {
	ca     *certs.CA
	reg    *prometheus.Registry
	logs   *observer.ObservedLogs
	client pb.IstioCertificateServiceClient
}

// startServer runs the CA service in-process on a loopback listener.
func startServer(t *testing.T, mutate func(*Options)) testEnv {
	t.Helper()
	ca, err := certs.NewSelfSignedCA("cluster.local", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	o := Options{CA: ca, Client: newFakeClient(testPods()...), Registry: reg, Logger: zap.New(core)}
	if mutate != nil {
		mutate(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testEnv{ca: ca, reg: reg, logs: logs, client: pb.NewIstioCertificateServiceClient(cc)}
}

func csrPEM(t testing.TB) string {
	t.Helper()
	key, err := certs.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := certs.NewCSR(key, spiffe.Identity{TrustDomain: "cluster.local", Namespace: "x", ServiceAccount: "whatever"})
	if err != nil {
		t.Fatal(err)
	}
	return string(certs.EncodeCSRPEM(der))
}

func weakCSRPEM(t *testing.T) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(certs.EncodeCSRPEM(der))
}

func request(csr string, ttlSeconds int64, impersonate string) *pb.IstioCertificateRequest {
	req := &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: ttlSeconds}
	if impersonate != "" {
		req.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{
			ImpersonatedIdentityKey: structpb.NewStringValue(impersonate),
		}}
	}
	return req
}

func TestCreateCertificate(t *testing.T) {
	env := startServer(t, nil)
	good := csrPEM(t)
	const (
		sleep   = "spiffe://cluster.local/ns/app/sa/sleep"
		httpbin = "spiffe://cluster.local/ns/app/sa/httpbin"
	)
	tests := []struct {
		name        string
		token       string // "" sends no authorization header
		csr         string
		ttl         int64
		impersonate string
		wantCode    codes.Code
		wantSAN     string
		wantTTL     time.Duration
	}{
		{"own identity", "sleep-a", good, 3600, "", codes.OK, sleep, time.Hour},
		{"own identity named explicitly", "sleep-a", good, 3600, sleep, codes.OK, sleep, time.Hour},
		{"ztunnel own identity", "ztunnel-a", good, 0, "", codes.OK, "spiffe://cluster.local/ns/istio-system/sa/ztunnel", 24 * time.Hour},
		{"ztunnel impersonates pod on its node", "ztunnel-a", good, 3600, sleep, codes.OK, sleep, time.Hour},
		{"ztunnel node resolved from bound pod", "ztunnel-a-podonly", good, 3600, sleep, codes.OK, sleep, time.Hour},
		{"ttl capped at max", "ztunnel-a", good, 48 * 3600, sleep, codes.OK, sleep, 24 * time.Hour},
		{"ttl zero is default", "sleep-a", good, 0, "", codes.OK, sleep, 24 * time.Hour},
		{"ztunnel impersonates pod on another node", "ztunnel-a", good, 3600, httpbin, codes.PermissionDenied, "", 0},
		{"ztunnel impersonates finished pod", "ztunnel-a", good, 3600, "spiffe://cluster.local/ns/app/sa/job", codes.PermissionDenied, "", 0},
		{"ztunnel impersonates unknown sa", "ztunnel-a", good, 3600, "spiffe://cluster.local/ns/app/sa/nobody", codes.PermissionDenied, "", 0},
		{"ztunnel token not bound to a pod", "ztunnel-unbound", good, 3600, sleep, codes.PermissionDenied, "", 0},
		{"non-ztunnel impersonates", "sleep-a", good, 3600, httpbin, codes.PermissionDenied, "", 0},
		{"impersonates other trust domain", "ztunnel-a", good, 3600, "spiffe://evil.org/ns/app/sa/sleep", codes.PermissionDenied, "", 0},
		{"malformed impersonated identity", "ztunnel-a", good, 3600, "app/sleep", codes.InvalidArgument, "", 0},
		{"no token", "", good, 3600, "", codes.Unauthenticated, "", 0},
		{"garbage token", "garbage", good, 3600, "", codes.Unauthenticated, "", 0},
		{"expired token", "expired", good, 3600, "", codes.Unauthenticated, "", 0},
		{"wrong audience", "wrong-audience", good, 3600, "", codes.Unauthenticated, "", 0},
		{"not a service account", "user", good, 3600, "", codes.Unauthenticated, "", 0},
		{"garbage token impersonating", "garbage", good, 3600, sleep, codes.Unauthenticated, "", 0},
		{"malformed CSR", "sleep-a", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", 3600, "", codes.InvalidArgument, "", 0},
		{"not PEM", "sleep-a", "hello", 3600, "", codes.InvalidArgument, "", 0},
		{"weak key", "sleep-a", weakCSRPEM(t), 3600, "", codes.InvalidArgument, "", 0},
		{"negative ttl", "sleep-a", good, -5, "", codes.InvalidArgument, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			}
			start := time.Now()
			resp, err := env.client.CreateCertificate(ctx, request(tt.csr, tt.ttl, tt.impersonate))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if err != nil {
				if msg := status.Convert(err).Message(); len(msg) < 20 {
					t.Errorf("error message %q does not say what to do", msg)
				}
				return
			}
			chain, err := certs.ParseCertsPEM([]byte(strings.Join(resp.CertChain, "")))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.CertChain) != 2 || !chain[len(chain)-1].Equal(env.ca.SigningCert()) {
				t.Fatalf("chain has %d entries, want leaf then root last", len(resp.CertChain))
			}
			id, err := env.ca.Bundle().Verify(chain)
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tt.wantSAN {
				t.Fatalf("SAN = %s, want %s", id, tt.wantSAN)
			}
			life := chain[0].NotAfter.Sub(start)
			if life < tt.wantTTL-5*time.Second || life > tt.wantTTL+5*time.Second {
				t.Fatalf("lifetime %v, want about %v", life, tt.wantTTL)
			}
		})
	}

	// Every refusal is counted and logged with the caller.
	var ok, refused int
	for _, tt := range tests {
		if tt.wantCode == codes.OK {
			ok++
		} else {
			refused++
		}
	}
	if got := int(counterValue(t, env.reg, "citadel_server_csr_count")); got != len(tests) {
		t.Errorf("csr_count = %d, want %d", got, len(tests))
	}
	if got := int(counterValue(t, env.reg, "citadel_server_success_cert_issuance_count")); got != ok {
		t.Errorf("success count = %d, want %d", got, ok)
	}
	if got := env.logs.FilterMessage("certificate request refused").Len(); got != refused {
		t.Errorf("refusals logged = %d, want %d", got, refused)
	}
	denied := env.logs.FilterMessage("certificate request refused").FilterField(zap.String("caller", "app/sleep")).
		FilterField(zap.String("impersonated", httpbin)).Len()
	if denied != 1 {
		t.Errorf("refusal of app/sleep impersonating httpbin logged %d times, want 1", denied)
	}
}

// counterValue sums a counter (all label values) gathered from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestCreateCertificateConfiguredNodeProxy(t *testing.T) {
	env := startServer(t, func(o *Options) {
		o.NodeProxies = []NamespacedName{{Namespace: "kube-system", Name: "node-agent"}}
		o.MaxTTL = time.Hour
	})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer ztunnel-a")
	_, err := env.client.CreateCertificate(ctx, request(csrPEM(t), 0, "spiffe://cluster.local/ns/app/sa/sleep"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("istio-system/ztunnel not configured as node proxy: code %v, want PermissionDenied", status.Code(err))
	}
	resp, err := env.client.CreateCertificate(ctx, request(csrPEM(t), 7200, ""))
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := certs.ParseCertsPEM([]byte(resp.CertChain[0]))
	if life := time.Until(chain[0].NotAfter); life > time.Hour {
		t.Fatalf("lifetime %v exceeds MaxTTL 1h", life)
	}
}

func TestNewServerOptions(t *testing.T) {
	ca, _ := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if _, err := NewServer(Options{CA: ca, Logger: zap.NewNop()}); err == nil {
		t.Fatal("server without client or authenticator accepted")
	}
	if _, err := NewServer(Options{Client: fake.NewClientset(), Logger: zap.NewNop()}); err == nil {
		t.Fatal("server without CA accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewServer(Options{CA: ca, Client: fake.NewClientset(), Logger: zap.NewNop(), Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(Options{CA: ca, Client: fake.NewClientset(), Logger: zap.NewNop(), Registry: reg}); err == nil {
		t.Fatal("registering metrics twice on one registry succeeded")
	}
}
