//go:build e2e

package xds

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"istio.io/istio/pkg/workloadapi/security"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/ambient-mesh/ambient/e2e/framework"
	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

var authzGVR = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}

// restarts sums the container restarts of the istiod-lite pods by name.
func restarts(f *framework.T) map[string]int32 {
	f.Helper()
	l, err := f.Client.CoreV1().Pods(framework.SystemNamespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "app=istiod-lite"})
	if err != nil {
		f.Fatal(err)
	}
	out := map[string]int32{}
	for _, p := range l.Items {
		for _, cs := range p.Status.ContainerStatuses {
			out[p.Name] += cs.RestartCount
		}
	}
	return out
}

// ztunnelAccepted returns the policy's ZtunnelAccepted condition as
// "status/reason: message", or "" when it has none yet.
func ztunnelAccepted(f *framework.T, dyn dynamic.Interface, name string) (string, error) {
	u, err := dyn.Resource(authzGVR).Namespace(f.Namespace).Get(f.Ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "ZtunnelAccepted" {
			return fmt.Sprintf("%v/%v: %v", m["status"], m["reason"], m["message"]), nil
		}
	}
	return "", nil
}

// TestMalformedPolicy: AuthorizationPolicies the API server accepts but
// ztunnel cannot enforce as written (a bad CIDR, a non-numeric port, the
// AUDIT action) each get a False ZtunnelAccepted condition naming the
// field, and a warning in istiod-lite's log naming it too; the bad ALLOW is
// sent fail-closed, the rest of the config keeps flowing (a valid policy
// created afterwards arrives) and no istiod-lite container restarts.
func TestMalformedPolicy(t *testing.T) {
	f := framework.New(t, map[string]string{"istio.io/dataplane-mode": "ambient"})
	before := restarts(f)
	s, _ := connect(f)
	dyn, err := dynamic.NewForConfig(f.Config)
	if err != nil {
		f.Fatal(err)
	}

	f.Apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-cidr
spec:
  selector:
    matchLabels:
      app: x
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.300/8"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bad-port
spec:
  action: DENY
  rules:
  - from:
    - source:
        namespaces: ["untrusted"]
    to:
    - operation:
        ports: ["eighty"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: audit
spec:
  action: AUDIT
  rules:
  - {}
`)
	want := map[string][]string{
		"bad-cidr": {"False/InvalidValue", "rules[0].from[0].source.ipBlocks[0]", "10.0.0.300/8"},
		"bad-port": {"False/InvalidValue", "rules[0].to[0].operation.ports[0]", "eighty"},
		"audit":    {"False/UnsupportedValue", "AUDIT"},
	}
	for name, parts := range want {
		f.Eventually(30*time.Second, "ZtunnelAccepted condition on "+name, func() error {
			got, err := ztunnelAccepted(f, dyn, name)
			if err != nil {
				return err
			}
			for _, p := range parts {
				if !strings.Contains(got, p) {
					return fmt.Errorf("condition %q lacks %q", got, p)
				}
			}
			return nil
		})
	}

	// Every replica logs the field (each one builds the model).
	l, err := f.Client.CoreV1().Pods(framework.SystemNamespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "app=istiod-lite"})
	if err != nil {
		f.Fatal(err)
	}
	for i := range l.Items {
		p := &l.Items[i]
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		f.Eventually(15*time.Second, "istiod-lite "+p.Name+" logs the bad field", func() error {
			for _, line := range strings.Split(string(f.PodLog(p, "discovery")), "\n") {
				if strings.Contains(line, "policy not accepted by ztunnel as written") && strings.Contains(line, f.Namespace) &&
					strings.Contains(line, "rules[0].from[0].source.ipBlocks[0]") {
					t.Logf("%s: %s", p.Name, line)
					return nil
				}
			}
			return fmt.Errorf("no warning naming rules[0].from[0].source.ipBlocks[0] for %s/bad-cidr", f.Namespace)
		})
	}

	// What ztunnel gets: the bad ALLOW matches nothing, the DENY is kept
	// without its bad field (denies more), AUDIT is not sent.
	s.waitFor(f, 30*time.Second, "bad-cidr (no groups) and bad-port (DENY)", func(r map[string]map[string]seen) bool {
		bc, _ := r[pkgxds.AuthorizationType][f.Namespace+"/bad-cidr"].msg.(*security.Authorization)
		bp, _ := r[pkgxds.AuthorizationType][f.Namespace+"/bad-port"].msg.(*security.Authorization)
		return bc != nil && len(bc.GetGroups()) == 0 && bp != nil && bp.GetAction() == security.Action_DENY && len(bp.GetGroups()) == 1
	})

	f.Apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: good
spec:
  selector:
    matchLabels:
      app: x
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8"]
`)
	s.waitFor(f, 30*time.Second, "the valid policy created after the malformed ones", func(r map[string]map[string]seen) bool {
		g, _ := r[pkgxds.AuthorizationType][f.Namespace+"/good"].msg.(*security.Authorization)
		return g != nil && len(g.GetGroups()) == 1
	})
	s.mu.Lock()
	_, audit := s.res[pkgxds.AuthorizationType][f.Namespace+"/audit"]
	s.mu.Unlock()
	if audit {
		t.Error("the AUDIT policy was sent to ztunnel")
	}
	f.Eventually(10*time.Second, "good accepted", func() error {
		got, err := ztunnelAccepted(f, dyn, "good")
		if err != nil || !strings.HasPrefix(got, "True/") {
			return fmt.Errorf("condition %q (%v)", got, err)
		}
		return nil
	})
	for name, n := range restarts(f) {
		if n != before[name] {
			t.Errorf("istiod-lite %s restarted (%d → %d restarts)", name, before[name], n)
		}
	}
}
