//go:build e2e

package faults

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/framework"
	"github.com/ambient-mesh/ambient/pkg/certs"
)

// Istio's plugged-in CA Secret and its keys (istiod-lite/ca).
const (
	cacertsName    = "cacerts"
	selfSignedName = "istio-ca-secret"
	rootConfigMap  = "istio-ca-root-cert"
)

// TestCARootRotation rotates the mesh CA without restarting anything while a
// meshed client on node1 opens a new connection to a server on node2 five
// times a second. Istio's procedure: (A) plug in root1/intermediate1 with
// root-cert.pem = root1 + the old self-signed root; (B) add root2 to
// root-cert.pem, still signing with intermediate1; (C) sign with
// intermediate2, root-cert.pem = root2 + root1. Each step reaches the
// ztunnels with the next certificate they fetch (a new workload on each
// node), and a ztunnel that sees the distributed roots change renews every
// certificate it holds. Not one request may fail; at the end the client's
// and the server's certificates are issued by intermediate2. The clean-up
// deletes cacerts and restarts istiod-lite and the ztunnels, so the
// cluster is back on its self-signed root.
func TestCARootRotation(t *testing.T) {
	f := framework.New(t, map[string]string{ambientLabel: "ambient"})
	secrets := f.Client.CoreV1().Secrets(framework.SystemNamespace)
	if _, err := secrets.Get(f.Ctx, cacertsName, metav1.GetOptions{}); err == nil {
		t.Skip("the cluster already runs a plugged-in CA (cacerts); not touching it")
	}
	self, err := secrets.Get(f.Ctx, selfSignedName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read %s: %v", selfSignedName, err)
	}
	root0s, err := certs.ParseCertsPEM(self.Data["ca-cert.pem"])
	if err != nil {
		t.Fatalf("%s: %v", selfSignedName, err)
	}
	root0 := root0s[0]
	mk := func(c *certs.CA, err error) *certs.CA {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	root1 := mk(certs.NewSelfSignedCA("cluster.local", 48*time.Hour))
	root2 := mk(certs.NewSelfSignedCA("cluster.local", 48*time.Hour))
	int1 := mk(root1.NewIntermediate("intermediate1", 24*time.Hour))
	int2 := mk(root2.NewIntermediate("intermediate2", 24*time.Hour))

	t.Cleanup(func() { restoreCA(f) })

	// install writes cacerts and waits until istiod-lite re-read it: the
	// root ConfigMap of the test namespace then holds its root-cert.pem.
	install := func(step string, ca *certs.CA) {
		t.Helper()
		c, k, ch, r, err := ca.PluggedFiles()
		if err != nil {
			t.Fatal(err)
		}
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: cacertsName, Namespace: framework.SystemNamespace},
			Data:       map[string][]byte{"ca-cert.pem": c, "ca-key.pem": k, "cert-chain.pem": ch, "root-cert.pem": r},
		}
		if _, err := secrets.Update(f.Ctx, sec, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = secrets.Create(f.Ctx, sec, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: create cacerts: %v", step, err)
			}
		} else if err != nil {
			t.Fatalf("%s: update cacerts: %v", step, err)
		}
		f.Eventually(time.Minute, step+": istiod-lite publishes the new roots", func() error {
			cm, err := f.Client.CoreV1().ConfigMaps(f.Namespace).Get(f.Ctx, rootConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cm.Data["root-cert.pem"] != string(r) {
				return fmt.Errorf("root ConfigMap not updated yet")
			}
			return nil
		})
		t.Logf("%s: istiod-lite reloaded cacerts (signer %s, %d roots)", step, ca.SigningCert().Subject, len(ca.RootList()))
	}
	// newWorkloads starts a short-lived client on each node as a new service
	// account: each ztunnel fetches a certificate and learns the roots.
	n := 0
	newWorkloads := func(step, target string) {
		t.Helper()
		n++
		sa := fmt.Sprintf("probe-%d", n)
		f.Apply(fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s}\n", sa))
		var cs []*framework.EchoClient
		for _, node := range []string{"node1", "node2"} {
			cs = append(cs, f.StartEchoClient(framework.ClientPod{Name: sa + "-" + node, Node: node, ServiceAccount: sa},
				"--start-delay", "2s", "--target", target, "--count", "2", "--new-conn"))
		}
		for _, c := range cs {
			if res := c.Wait(2 * time.Minute); res.OK != 2 {
				t.Errorf("%s: new workload's requests: %d/2 ok: %v", step, res.OK, res.ErrorSamples)
			}
		}
	}
	bundleSize := func(node string) float64 {
		s, err := f.ZtunnelMetrics(node)
		if err != nil {
			return -1
		}
		return framework.SumMetric(s, "ztunnel_trust_bundle_roots", nil)
	}

	// A: plug in root1/intermediate1, keeping the self-signed root trusted.
	install("A", int1.WithRoots(root0))
	f.DeployEcho(framework.EchoOptions{Name: "server", Node: "node2"})
	f.WaitDeploymentReady("server-v1", 90*time.Second)
	f.Apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: client}\n")
	target := fmt.Sprintf("http://%s:%d/", f.Pods("app=server")[0].Status.PodIP, framework.EchoHTTPPort)
	newWorkloads("A", target)

	const qps = 5
	steadyFor := 150 * time.Second
	count := int(qps * steadyFor.Seconds())
	steady := f.StartEchoClient(framework.ClientPod{Name: "steady", Node: "node1", ServiceAccount: "client"},
		"--start-delay", "3s", "--target", target, "--count", fmt.Sprint(count), "--qps", fmt.Sprint(qps), "--new-conn", "--timeout", "5s")
	f.Eventually(time.Minute, "steady client running", func() error {
		p, err := f.Client.CoreV1().Pods(f.Namespace).Get(f.Ctx, "steady", metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("steady client not running yet: %v", err)
		}
		return nil
	})
	time.Sleep(10 * time.Second)

	// B: root2 joins root-cert.pem; intermediate1 still signs.
	install("B", int1.WithRoots(root0, root2.SigningCert()))
	newWorkloads("B", target)
	for _, node := range []string{"node1", "node2"} {
		f.Eventually(time.Minute, "B: ztunnel on "+node+" trusts root0, root1 and root2", func() error {
			if got := bundleSize(node); got != 3 {
				return fmt.Errorf("ztunnel_trust_bundle_roots = %v", got)
			}
			return nil
		})
	}

	// C: intermediate2 signs; root-cert.pem = root2 + root1.
	install("C", int2.WithRoots(root1.SigningCert()))
	newWorkloads("C", target)
	int2Serial := int2.SigningCert().SerialNumber.Text(16)
	for _, w := range []struct{ node, sa string }{{"node1", "client"}, {"node2", "server"}} {
		id := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", f.Namespace, w.sa)
		f.Eventually(time.Minute, "C: "+id+" holds a certificate of intermediate2", func() error {
			return issuedBy(f, w.node, id, int2Serial)
		})
	}
	t.Logf("C: client and server certificates are issued by intermediate2 (serial %s), chained to root2", int2Serial)

	res := steady.Wait(steadyFor + 2*time.Minute)
	t.Logf("steady client across the rotation: %d/%d ok, %d errors, latency %+v", res.OK, res.Total, res.Errors, res.LatencyMs)
	if res.Total != count || res.OK != count {
		t.Errorf("steady client: %d/%d ok (%d sent), errors %v", res.OK, count, res.Total, res.ErrorSamples)
	}
}

// issuedBy checks in node's ztunnel certificate dump that id's certificate
// chain has the intermediate of serial interSerial after its leaf.
func issuedBy(f *framework.T, node, id, interSerial string) error {
	b, err := f.ProxyGet(f.ZtunnelPod(node), "15000", "/config_dump?section=certificates")
	if err != nil {
		return err
	}
	var dump struct {
		Certificates []struct {
			Identity  string `json:"identity"`
			State     string `json:"state"`
			CertChain []struct {
				SerialNumber string `json:"serialNumber"`
			} `json:"certChain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		return fmt.Errorf("config_dump: %w", err)
	}
	for _, c := range dump.Certificates {
		if c.Identity != id {
			continue
		}
		if len(c.CertChain) < 2 || !strings.EqualFold(c.CertChain[1].SerialNumber, interSerial) {
			return fmt.Errorf("%s on %s: chain %+v, want intermediate %s", id, node, c.CertChain, interSerial)
		}
		return nil
	}
	return fmt.Errorf("%s not held by ztunnel on %s", id, node)
}

// restoreCA puts the cluster back on its self-signed root: cacerts deleted,
// istiod-lite restarted (it reads istio-ca-secret again; a running
// istiod-lite keeps the loaded CA when cacerts disappears), then every
// ztunnel restarted so none keeps the rotation's roots or certificates.
func restoreCA(f *framework.T) {
	err := f.Client.CoreV1().Secrets(framework.SystemNamespace).Delete(f.Ctx, cacertsName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		f.Errorf("restore: delete cacerts: %v", err)
	}
	d, err := f.Client.AppsV1().Deployments(framework.SystemNamespace).Get(f.Ctx, "istiod-lite", metav1.GetOptions{})
	if err != nil {
		f.Errorf("restore: get istiod-lite: %v", err)
		return
	}
	replicas := *d.Spec.Replicas
	f.ScaleDeployment(framework.SystemNamespace, "istiod-lite", 0, 2*time.Minute)
	f.ScaleDeployment(framework.SystemNamespace, "istiod-lite", replicas, 3*time.Minute)
	for _, node := range []string{"node1", "node2"} {
		old := f.DeleteZtunnelPod(node)
		f.WaitZtunnelReady(node, old, 2*time.Minute)
	}
	f.WaitProxiesInSync(2 * time.Minute)
}
