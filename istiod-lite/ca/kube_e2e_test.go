package ca

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

// TestKubeE2E runs the CA against a real kube-apiserver: real TokenRequest
// tokens bound to pods, real TokenReview, pods found by spec.nodeName. The
// pods are bound to node names that do not exist, so no node agent runs them
// (the API server still puts the node name in pod-bound tokens). The pod
// garbage collector deletes pods of missing nodes only after a 40 s
// quarantine; the test needs a few seconds.
//
//	AMBIENT_E2E_KUBECONFIG=/path/to/kubeconfig go test ./istiod-lite/ca -run KubeE2E
func TestKubeE2E(t *testing.T) {
	path := os.Getenv("AMBIENT_E2E_KUBECONFIG")
	if path == "" {
		t.Skip("AMBIENT_E2E_KUBECONFIG not set")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().Deployments("istio-system").Get(t.Context(), "istiod-lite", metav1.GetOptions{}); err == nil {
		t.Skip("istiod-lite is installed in this cluster: its controllers would fight this test's (run it on a cluster without the mesh, as make test-e2e does first)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	suffix := rand.String(6)
	nodeA, nodeB := "ambient-ca-e2e-a-"+suffix, "ambient-ca-e2e-b-"+suffix
	nsObj, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "ambient-ca-e2e-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	t.Cleanup(func() {
		// No kubelet confirms the deletion of pods on the made-up nodes: force it.
		zero := int64(0)
		_ = client.CoreV1().Pods(ns).DeleteCollection(context.Background(),
			metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		_ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	for _, sa := range []string{"ztunnel", "sleep", "httpbin", "other"} {
		if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: sa},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := map[string]*corev1.Pod{}
	for _, p := range []struct{ name, sa, node string }{
		{"ztunnel-a", "ztunnel", nodeA},
		{"ztunnel-nonode", "ztunnel", ""},
		{"sleep-a", "sleep", nodeA},
		{"httpbin-b", "httpbin", nodeB},
		{"other-a", "other", nodeA},
	} {
		created, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name},
			Spec: corev1.PodSpec{
				ServiceAccountName: p.sa, NodeName: p.node,
				// An unschedulable selector keeps the scheduler off the unbound pod.
				NodeSelector: map[string]string{"ambient-ca-e2e": "never"},
				Containers:   []corev1.Container{{Name: "c", Image: "ambient/none"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[p.name] = created
	}
	token := func(podName string, audiences ...string) string {
		t.Helper()
		p := pods[podName]
		exp := int64(600)
		tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, p.Spec.ServiceAccountName, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{
				Audiences:         audiences,
				ExpirationSeconds: &exp,
				BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	// The CA, its root kept in this test's namespace.
	ca1, src, err := LoadOrCreateCA(ctx, client, StoreOptions{Namespace: ns}, zaptest.NewLogger(t))
	if err != nil || src != SourceGenerated {
		t.Fatalf("first LoadOrCreateCA: %s, %v", src, err)
	}
	ca2, src, err := LoadOrCreateCA(ctx, client, StoreOptions{Namespace: ns}, zaptest.NewLogger(t))
	if err != nil || src != SourceSelfSigned || !ca2.SigningCert().Equal(ca1.SigningCert()) {
		t.Fatalf("second LoadOrCreateCA: %s, %v; want the stored root", src, err)
	}

	srv, err := NewServer(Options{CA: ca2, Client: client, NodeProxies: []NamespacedName{{Namespace: ns, Name: "ztunnel"}}, Logger: zaptest.NewLogger(t)})
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
	defer gs.Stop()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	caClient := pb.NewIstioCertificateServiceClient(cc)

	spiffeOf := func(sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	ztunnelTok, otherTok := token("ztunnel-a", "istio-ca"), token("other-a", "istio-ca")
	tests := []struct {
		name, token, csr, impersonate string
		wantCode                      codes.Code
		wantSAN                       string
	}{
		{"ztunnel gets identity of pod on its node", ztunnelTok, csrPEM(t), spiffeOf("sleep"), codes.OK, spiffeOf("sleep")},
		{"ztunnel denied identity of pod on other node", ztunnelTok, csrPEM(t), spiffeOf("httpbin"), codes.PermissionDenied, ""},
		{"ztunnel own identity", ztunnelTok, csrPEM(t), "", codes.OK, spiffeOf("ztunnel")},
		{"ztunnel token of pod without node", token("ztunnel-nonode", "istio-ca"), csrPEM(t), spiffeOf("sleep"), codes.PermissionDenied, ""},
		{"non-ztunnel impersonating", otherTok, csrPEM(t), spiffeOf("sleep"), codes.PermissionDenied, ""},
		{"own identity", otherTok, csrPEM(t), "", codes.OK, spiffeOf("other")},
		{"wrong audience", token("other-a", "not-istio-ca"), csrPEM(t), "", codes.Unauthenticated, ""},
		{"garbage token", "garbage", csrPEM(t), "", codes.Unauthenticated, ""},
		{"malformed CSR", otherTok, "junk", "", codes.InvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			resp, err := caClient.CreateCertificate(cctx, request(tt.csr, 3600, tt.impersonate))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if err != nil {
				return
			}
			chain, err := certs.ParseCertsPEM([]byte(strings.Join(resp.CertChain, "")))
			if err != nil {
				t.Fatal(err)
			}
			id, err := ca1.Bundle().Verify(chain)
			if err != nil || id.String() != tt.wantSAN {
				t.Fatalf("SAN = %s (%v), want %s", id, err, tt.wantSAN)
			}
		})
	}

	// Root distribution into this namespace.
	pub := NewRootPublisher(client, ca1.RootsPEM(), nil, 0, zaptest.NewLogger(t))
	if err := pub.Reconcile(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, RootConfigMapName, metav1.GetOptions{})
	if err != nil || cm.Data[RootConfigMapKey] != string(ca1.RootsPEM()) {
		t.Fatalf("root configmap: %v", err)
	}
}
