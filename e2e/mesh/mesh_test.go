//go:build e2e

package mesh

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, framework.InstallMesh) }

const ambientLabel = "istio.io/dataplane-mode"

// TestL4Mesh: enroll a namespace with running pods; cross-node traffic goes
// through both ztunnels (the server sees the destination ztunnel as its peer
// and ztunnel's metrics carry the client's SPIFFE identity); an L4
// AuthorizationPolicy admits only the named principal; un-enrolling restores
// direct traffic.
func TestL4Mesh(t *testing.T) {
	f := framework.New(t, nil)
	f.DeployEcho(framework.EchoOptions{Name: "server", Node: "node2"})
	f.WaitDeploymentReady("server-v1", 90*time.Second)
	server := f.Pods("app=server")[0]
	target := fmt.Sprintf("http://%s:%d/", server.Status.PodIP, framework.EchoHTTPPort)

	direct := f.RunEchoClient("direct", "node1", "--target", target, "--count", "3")
	if direct.OK != 3 {
		t.Fatalf("before enrollment: %d/3 ok: %v", direct.OK, direct.ErrorSamples)
	}

	// Enroll the namespace: no pod restarts.
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"ambient"}}}`, ambientLabel)
	if _, err := f.Client.CoreV1().Namespaces().Patch(f.Ctx, f.Namespace, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "client"}}
	if _, err := f.Client.CoreV1().ServiceAccounts(f.Namespace).Create(f.Ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var meshed framework.EchoSummary
	f.Eventually(60*time.Second, "meshed request reaches the server through ztunnel", func() error {
		meshed = f.RunEchoClientAs("meshed-"+fmt.Sprint(time.Now().UnixNano()%100000), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "3")
		if meshed.OK != 3 {
			return fmt.Errorf("%d/3 ok: %v", meshed.OK, meshed.ErrorSamples)
		}
		return nil
	})
	zt := f.ZtunnelPod("node2")
	f.Eventually(30*time.Second, "destination ztunnel reports the client's identity", func() error {
		b, err := f.ProxyGet(zt, "15020", "/metrics")
		if err != nil {
			return err
		}
		want := fmt.Sprintf(`source_principal="spiffe://cluster.local/ns/%s/sa/client"`, f.Namespace)
		if !strings.Contains(string(b), "istio_tcp_connections_opened_total") || !strings.Contains(string(b), want) {
			return fmt.Errorf("metrics lack %s", want)
		}
		return nil
	})
	b, err := f.ProxyGet(zt, "15000", "/config_dump?section=certificates")
	if err != nil {
		t.Fatal(err)
	}
	var certs map[string][]map[string]any
	if err := json.Unmarshal(b, &certs); err != nil {
		t.Fatalf("certificates dump: %v", err)
	}
	found := false
	for _, c := range certs["certificates"] {
		if c["identity"] == fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/server", f.Namespace) && c["state"] == "Available" {
			found = true
		}
	}
	if !found {
		t.Errorf("node2's ztunnel holds no certificate for the server: %s", b)
	}

	// A Service VIP spreads meshed connections over the replicas of both nodes.
	f.DeployEcho(framework.EchoOptions{Name: "lb", Version: "v1", Node: "node1"})
	f.DeployEcho(framework.EchoOptions{Name: "lb", Version: "v2", Node: "node2"})
	f.WaitDeploymentReady("lb-v1", 90*time.Second)
	f.WaitDeploymentReady("lb-v2", 90*time.Second)
	lb, err := f.Client.CoreV1().Services(f.Namespace).Get(f.Ctx, "lb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Eventually(60*time.Second, "Service VIP load-balanced over both nodes through the mesh", func() error {
		res := f.RunEchoClientAs("lb-"+fmt.Sprint(time.Now().UnixNano()%100000), "node1", "client", "--start-delay", "2s",
			"--target", fmt.Sprintf("http://%s:80/", lb.Spec.ClusterIP), "--count", "30", "--new-conn")
		if res.OK != 30 || res.ByVersion["v1"] == 0 || res.ByVersion["v2"] == 0 {
			return fmt.Errorf("%d/30 ok, by version %v: %v", res.OK, res.ByVersion, res.ErrorSamples)
		}
		return nil
	})

	// L4 policy: only another principal is allowed → the client is refused.
	policy := fmt.Sprintf(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"only-other","namespace":%q},
"spec":{"selector":{"matchLabels":{"app":"server"}},"action":"ALLOW","rules":[{"from":[{"source":{"principals":["cluster.local/ns/%s/sa/other"]}}]}]}}`, f.Namespace, f.Namespace)
	f.Apply(policy)
	f.Eventually(60*time.Second, "ALLOW for another principal refuses the client", func() error {
		res := f.RunEchoClientAs("denied-"+fmt.Sprint(time.Now().UnixNano()%100000), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "3")
		if res.OK != 0 {
			return fmt.Errorf("%d/3 requests still allowed", res.OK)
		}
		return nil
	})

	// Un-enroll: traffic flows directly again.
	unpatch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, ambientLabel)
	if _, err := f.Client.CoreV1().Namespaces().Patch(f.Ctx, f.Namespace, types.MergePatchType, []byte(unpatch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Eventually(60*time.Second, "un-enrolled traffic flows directly", func() error {
		res := f.RunEchoClientAs("after-"+fmt.Sprint(time.Now().UnixNano()%100000), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "3")
		if res.OK != 3 {
			return fmt.Errorf("%d/3 ok: %v", res.OK, res.ErrorSamples)
		}
		return nil
	})
}

// TestL4DenyAndStrict: a DENY on one port refuses it and leaves the others
// open; PeerAuthentication STRICT refuses a client outside the mesh while a
// meshed one still gets through.
func TestL4DenyAndStrict(t *testing.T) {
	f := framework.New(t, map[string]string{ambientLabel: "ambient"})
	f.DeployEcho(framework.EchoOptions{Name: "server", Node: "node2"})
	f.WaitDeploymentReady("server-v1", 90*time.Second)
	f.Apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: client}\n")
	ip := f.Pods("app=server")[0].Status.PodIP
	httpTarget := fmt.Sprintf("http://%s:%d/", ip, framework.EchoHTTPPort)
	tcpTarget := fmt.Sprintf("tcp://%s:%d", ip, framework.EchoTCPPort)
	n := 0
	as := func(labels map[string]string, args ...string) framework.EchoSummary {
		n++
		return f.RunEchoClientWith(framework.ClientPod{Name: fmt.Sprintf("client-%d", n), Node: "node1", ServiceAccount: "client", Labels: labels},
			append([]string{"--start-delay", "2s", "--count", "3", "--new-conn"}, args...)...)
	}

	f.Apply(fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-http}
spec:
  selector: {matchLabels: {app: server}}
  action: DENY
  rules:
  - to:
    - operation: {ports: ["%d"]}
`, framework.EchoHTTPPort))
	f.Eventually(60*time.Second, "DENY on the HTTP port refuses it", func() error {
		if res := as(nil, "--target", httpTarget); res.OK != 0 {
			return fmt.Errorf("%d/3 requests to the denied port got through", res.OK)
		}
		return nil
	})
	if res := as(nil, "--target", tcpTarget); res.OK != 3 {
		t.Fatalf("the TCP port (not denied) refused too: %d/3: %v", res.OK, res.ErrorSamples)
	}

	if err := f.Client.CoreV1().RESTClient().Delete().AbsPath("/apis/security.istio.io/v1/namespaces", f.Namespace, "authorizationpolicies", "deny-http").Do(f.Ctx).Error(); err != nil {
		t.Fatal(err)
	}
	outside := map[string]string{ambientLabel: "none"} // this client opts out: plaintext
	f.Eventually(60*time.Second, "PERMISSIVE (default) admits a client outside the mesh", func() error {
		if res := as(outside, "--target", httpTarget); res.OK != 3 {
			return fmt.Errorf("%d/3 plaintext requests got through: %v", res.OK, res.ErrorSamples)
		}
		return nil
	})
	f.Apply(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict}
spec:
  mtls: {mode: STRICT}
`)
	f.Eventually(60*time.Second, "STRICT refuses a client outside the mesh", func() error {
		if res := as(outside, "--target", httpTarget); res.OK != 0 {
			return fmt.Errorf("%d/3 plaintext requests got through", res.OK)
		}
		return nil
	})
	if res := as(nil, "--target", httpTarget); res.OK != 3 {
		t.Fatalf("STRICT refused the meshed client: %d/3: %v", res.OK, res.ErrorSamples)
	}
}
