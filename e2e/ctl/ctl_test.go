//go:build e2e

package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// result of one ambientctl run.
type result struct {
	stdout, stderr string
	code           int
}

// ctl runs ambientctl against the test cluster with separate stdout/stderr.
func ctl(t *framework.T, args ...string) result {
	t.Helper()
	return ctlWith(t, append([]string{"--kubeconfig", t.Kubeconfig}, args...)...)
}

func ctlWith(t *framework.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Ctx, 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(t.BinDir, "ambientctl"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run ambientctl %v: %v", args, err)
	}
	return r
}

// ok runs ambientctl and fails the test unless it exits 0.
func ok(t *framework.T, args ...string) result {
	t.Helper()
	r := ctl(t, args...)
	if r.code != 0 {
		t.Fatalf("ambientctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs ambientctl, expects a non-zero exit and a one-line error
// containing want, and returns it.
func fails(t *framework.T, want string, args ...string) string {
	t.Helper()
	r := ctl(t, args...)
	return checkFailure(t, r, want, args)
}

func checkFailure(t *framework.T, r result, want string, args []string) string {
	t.Helper()
	msg := strings.TrimSpace(r.stderr)
	if r.code == 0 || !strings.HasPrefix(msg, "Error: ") || strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Errorf("ambientctl %s: exit %d, stderr %q; want a one-line error containing %q", strings.Join(args, " "), r.code, msg, want)
	}
	return msg
}

func parseJSON(t *framework.T, what, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, s)
	}
}

func parseYAML(t *framework.T, what, s string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: not YAML: %v\n%s", what, err, s)
	}
}

// TestAmbientctl: the whole life of the mesh through ambientctl.
func TestAmbientctl(t *testing.T) {
	f := framework.New(t, nil)
	// Whatever happens, leave the mesh installed for the suites after this one.
	t.Cleanup(func() {
		if err := framework.InstallMesh(); err != nil {
			t.Errorf("reinstall the mesh at the end: %v", err)
		}
	})

	// install, twice: the second run upgrades in place.
	first := ok(f, "install", "--timeout", "5m")
	second := ok(f, "install", "--timeout", "5m")
	for _, want := range []string{"✔ kernel:", "✔ ambient mesh ready"} {
		if !strings.Contains(first.stdout, want) || !strings.Contains(second.stdout, want) {
			t.Errorf("install output lacks %q:\n%s\n---\n%s", want, first.stdout, second.stdout)
		}
	}
	for _, chart := range []string{"base", "istiod-lite", "ztunnel"} {
		if !strings.Contains(second.stdout, "✔ "+chart+" upgraded") {
			t.Errorf("second install did not upgrade %s:\n%s", chart, second.stdout)
		}
	}
	nodes, err := f.Client.CoreV1().Nodes().List(f.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zt, err := f.Client.CoreV1().Pods(framework.SystemNamespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "app=ztunnel"})
	if err != nil || len(zt.Items) != len(nodes.Items) {
		t.Fatalf("ztunnel pods for %d nodes: %v", len(nodes.Items), err)
	}

	// check: everything OK (the CRDs may WARN: they were there before).
	chk := ok(f, "check", "-o", "json")
	var results []struct{ Check, Status, Message string }
	parseJSON(f, "check -o json", chk.stdout, &results)
	seen := map[string]string{}
	for _, r := range results {
		seen[r.Check] = r.Status
		if r.Status == "FAIL" || r.Status == "WARN" && r.Check != "crds" {
			t.Errorf("check %s: %s %s", r.Check, r.Status, r.Message)
		}
	}
	for _, c := range []string{"kubernetes-version", "nodes", "kernel", "istiod-lite", "ztunnel", "root-cert"} {
		if seen[c] == "" {
			t.Errorf("check did not run %q: %v", c, seen)
		}
	}

	t.Run("commands", func(st *testing.T) { commands(f.Sub(st)) })
	t.Run("bad input", func(st *testing.T) { badInput(f.Sub(st)) })
	if t.Failed() {
		return
	}

	// Record what capture pinned on each node, to prove it gone afterwards.
	before := map[string]kernelObjects{}
	for _, n := range nodes.Items {
		ko := pinnedObjects(t, nodeBPFFS(f, n.Name))
		if len(ko.links) == 0 || len(ko.maps) == 0 {
			t.Fatalf("node %s: nothing pinned under its bpffs while installed (links %v maps %v)", n.Name, ko.links, ko.maps)
		}
		before[n.Name] = ko
	}
	t.Logf("pinned while installed: %+v", before)

	un := ok(f, "uninstall", "--timeout", "3m")
	t.Log(un.stdout)
	if want := fmt.Sprintf("✔ eBPF programs and pins removed from %d nodes", len(nodes.Items)); !strings.Contains(un.stdout, want) {
		t.Errorf("uninstall output lacks %q:\n%s", want, un.stdout)
	}
	uninstalled(f)
	for _, n := range nodes.Items {
		dir := nodeBPFFS(f, n.Name)
		f.Eventually(30*time.Second, "node "+n.Name+" has no eBPF objects of capture", func() error {
			if left := pinFiles(t, dir); len(left) > 0 {
				return fmt.Errorf("pins left: %v", left)
			}
			return before[n.Name].stillLoaded()
		})
	}
	// Idempotent.
	again := ok(f, "uninstall", "--timeout", "3m")
	for _, want := range []string{"- ztunnel not installed", "- istiod-lite not installed", "- base not installed"} {
		if !strings.Contains(again.stdout, want) {
			t.Errorf("second uninstall lacks %q:\n%s", want, again.stdout)
		}
	}
}

// commands runs every command against the installed mesh.
func commands(f *framework.T) {
	t := f
	f.DeployEcho(framework.EchoOptions{Name: "echo", Node: "node1"})
	f.WaitDeploymentReady("echo-v1", 90*time.Second)
	echo := f.Pods("app=echo")[0]

	// dataplane enroll: the label, and the pod listed as captured.
	en := ok(f, "dataplane", "enroll", f.Namespace)
	if !strings.Contains(en.stdout+en.stderr, echo.Name) {
		t.Errorf("enroll does not list %s as captured:\n%s%s", echo.Name, en.stderr, en.stdout)
	}
	ns, err := f.Client.CoreV1().Namespaces().Get(f.Ctx, f.Namespace, metav1.GetOptions{})
	if err != nil || ns.Labels["istio.io/dataplane-mode"] != "ambient" {
		t.Fatalf("namespace labels after enroll: %v %v", ns.Labels, err)
	}
	var enrolled map[string]any
	parseJSON(f, "enroll -o json", ok(f, "dataplane", "enroll", f.Namespace, "-o", "json").stdout, &enrolled)

	// ztunnel-config: every section, table/json/yaml; without --node a note names the ztunnel.
	f.Eventually(60*time.Second, "ztunnel-config workloads lists the echo pod", func() error {
		r := ctl(f, "ztunnel-config", "workloads")
		if r.code != 0 || !strings.Contains(r.stdout, echo.Name) {
			return fmt.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "note: showing ztunnel") || !strings.Contains(r.stderr, "choose with --node") {
			return fmt.Errorf("no note on stderr: %q", r.stderr)
		}
		return nil
	})
	for _, s := range []string{"workloads", "services", "policies", "certificates", "connections"} {
		ok(f, "ztunnel-config", s, "--node", "node1")
		var v []any
		parseJSON(f, s+" -o json", ok(f, "ztunnel-config", s, "--node", "node1", "-o", "json").stdout, &v)
		parseYAML(f, s+" -o yaml", ok(f, "ztunnel-config", s, "--node", "node2", "-o", "yaml").stdout, &v)
	}
	zt := f.ZtunnelPod("node2")
	if r := ok(f, "ztunnel-config", "workloads", zt.Name); strings.Contains(r.stderr, "note:") {
		t.Errorf("a named ztunnel pod still gave a note: %q", r.stderr)
	}
	// Traffic through the mesh makes node1's ztunnel fetch certificates.
	res := f.RunEchoClient("client", "node1", "--start-delay", "2s", "--target", fmt.Sprintf("http://%s:80/", f.ServiceIP("echo")), "--count", "5")
	if res.OK != 5 {
		t.Fatalf("meshed requests: %d ok of %d: %v", res.OK, res.Total, res.ErrorSamples)
	}
	f.Eventually(60*time.Second, "node1's ztunnel holds a certificate of the test namespace", func() error {
		r := ctl(f, "ztunnel-config", "certificates", "--node", "node1")
		if !strings.Contains(r.stdout, "/ns/"+f.Namespace+"/sa/") {
			return fmt.Errorf("certificates:\n%s%s", r.stdout, r.stderr)
		}
		return nil
	})

	// proxy-status: every ztunnel, in sync.
	f.Eventually(60*time.Second, "proxy-status shows every ztunnel in sync", func() error {
		r := ctl(f, "proxy-status")
		n := 0
		for _, line := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(line, "ztunnel-") {
				n++
				if strings.Contains(line, "STALE") || strings.Contains(line, "NACK") || strings.Contains(line, "NOT CONNECTED") {
					return fmt.Errorf("not in sync: %s", line)
				}
			}
		}
		if r.code != 0 || n != 2 {
			return fmt.Errorf("exit %d, %d ztunnels:\n%s%s", r.code, n, r.stdout, r.stderr)
		}
		return nil
	})
	var ps []struct {
		Proxy  struct{ Namespace, Name string }
		Istiod string
	}
	parseJSON(f, "proxy-status -o json", ok(f, "proxy-status", "-o", "json").stdout, &ps)
	if len(ps) < 2 || ps[0].Istiod == "" {
		t.Errorf("proxy-status -o json: %+v", ps)
	}
	ok(f, "proxy-status")

	// waypoint apply/list/status/delete.
	ok(f, "waypoint", "apply", "-n", f.Namespace, "--enroll-namespace", "--wait", "--timeout", "2m")
	list := ok(f, "waypoint", "list", "-n", f.Namespace)
	if !strings.Contains(list.stdout, "waypoint") {
		t.Errorf("waypoint list:\n%s", list.stdout)
	}
	var wps []map[string]any
	parseJSON(f, "waypoint list -o json", ok(f, "waypoint", "list", "-A", "-o", "json").stdout, &wps)
	st := ok(f, "waypoint", "status", "-n", f.Namespace)
	if !strings.Contains(st.stdout, "Programmed") {
		t.Errorf("waypoint status:\n%s", st.stdout)
	}
	var status any
	parseYAML(f, "waypoint status -o yaml", ok(f, "waypoint", "status", "-n", f.Namespace, "-o", "yaml").stdout, &status)
	f.Eventually(60*time.Second, "proxy-status lists the waypoint", func() error {
		if r := ctl(f, "proxy-status"); !strings.Contains(r.stdout, "waypoint") {
			return fmt.Errorf("proxy-status:\n%s", r.stdout)
		}
		return nil
	})
	ok(f, "waypoint", "delete", "-n", f.Namespace)
	gw := gwclient.NewForConfigOrDie(f.Config)
	f.Eventually(30*time.Second, "the waypoint Gateway is gone", func() error {
		if _, err := gw.GatewayV1().Gateways(f.Namespace).Get(f.Ctx, "waypoint", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})

	// version: client and both planes.
	var v struct{ Client, ControlPlane, DataPlane string }
	parseJSON(f, "version -o json", ok(f, "version", "-o", "json").stdout, &v)
	if v.Client == "" || v.ControlPlane == "" || v.DataPlane == "" {
		t.Errorf("version = %+v, want all three", v)
	}

	ok(f, "dataplane", "unenroll", f.Namespace)
	ns, _ = f.Client.CoreV1().Namespaces().Get(f.Ctx, f.Namespace, metav1.GetOptions{})
	if _, has := ns.Labels["istio.io/dataplane-mode"]; has {
		t.Errorf("label kept after unenroll: %v", ns.Labels)
	}
}

// badInput: one-line errors that say what to do, non-zero exit, no change.
func badInput(f *framework.T) {
	t := f
	fails(f, `namespace "no-such-ns" not found: create it first`, "dataplane", "enroll", "no-such-ns")
	fails(f, `namespace "no-such-ns" not found`, "waypoint", "apply", "-n", "no-such-ns")
	r := ctlWith(f, "--kubeconfig", filepath.Join(t.TempDir(), "missing"), "dataplane", "enroll", "default")
	checkFailure(f, r, "set KUBECONFIG or pass --kubeconfig", []string{"--kubeconfig", "<missing>", "dataplane", "enroll", "default"})
	fails(f, `no ztunnel pod on node "node9"`, "ztunnel-config", "workloads", "--node", "node9")
	fails(f, `unknown values key "pilot"`, "install", "--set", "pilot.enabled=true")

	// Bad values change nothing: the releases keep their revision.
	revs := releaseRevisions(f)
	fails(f, "caSource", "install", "--set", "istiodLite.caSource=vault")
	if after := releaseRevisions(f); fmt.Sprint(after) != fmt.Sprint(revs) {
		t.Errorf("a refused install changed the releases: %v → %v", revs, after)
	}
}

// releaseRevisions maps each Helm release in istio-system to its latest revision.
func releaseRevisions(f *framework.T) map[string]string {
	f.Helper()
	l, err := f.Client.CoreV1().Secrets(framework.SystemNamespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	if err != nil {
		f.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range l.Items {
		name, v := s.Labels["name"], s.Labels["version"]
		if v > out[name] || len(v) > len(out[name]) {
			out[name] = v
		}
	}
	return out
}

// uninstalled checks nothing of the mesh is left but what uninstall keeps.
func uninstalled(f *framework.T) {
	t := f
	ctx := f.Ctx
	sys := framework.SystemNamespace
	if l, _ := f.Client.CoreV1().Pods(sys).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("pods left in %s: %d", sys, len(l.Items))
	}
	if l, _ := f.Client.CoreV1().Secrets(sys).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"}); len(l.Items) != 0 {
		t.Errorf("Helm release records left: %d", len(l.Items))
	}
	if _, err := f.Client.AppsV1().DaemonSets(sys).Get(ctx, "ztunnel", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet ztunnel: %v", err)
	}
	if _, err := f.Client.AppsV1().Deployments(sys).Get(ctx, "istiod-lite", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment istiod-lite: %v", err)
	}
	for _, name := range []string{"istiod-lite", "ztunnel"} {
		if _, err := f.Client.CoreV1().ServiceAccounts(sys).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ServiceAccount %s: %v", name, err)
		}
	}
	if _, err := f.Client.CoreV1().Services(sys).Get(ctx, "istiod-lite", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service istiod-lite: %v", err)
	}
	if l, _ := f.Client.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); l != nil {
		for _, r := range l.Items {
			if strings.Contains(r.Name, "ztunnel") || strings.Contains(r.Name, "istiod-lite") {
				t.Errorf("ClusterRole %s left", r.Name)
			}
		}
	}
	if _, err := f.Client.CoreV1().Secrets(sys).Get(ctx, "istio-ca-secret", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret istio-ca-secret: %v", err)
	}
	if _, err := f.Client.CoordinationV1().Leases(sys).Get(ctx, "istiod-lite", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Lease istiod-lite: %v", err)
	}
	if l, _ := f.Client.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=istio-ca-root-cert"}); len(l.Items) != 0 {
		t.Errorf("%d istio-ca-root-cert ConfigMaps left (e.g. in %s)", len(l.Items), l.Items[0].Namespace)
	}
	// The waypoint GatewayClass goes unless another suite's waypoint still uses it.
	gw := gwclient.NewForConfigOrDie(f.Config)
	gws, err := gw.GatewayV1().Gateways(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := false
	for _, g := range gws.Items {
		used = used || g.Spec.GatewayClassName == "istio-waypoint"
	}
	if _, err := gw.GatewayV1().GatewayClasses().Get(ctx, "istio-waypoint", metav1.GetOptions{}); !used && !apierrors.IsNotFound(err) {
		t.Errorf("GatewayClass istio-waypoint (no waypoint uses it): %v", err)
	}
	for _, ns := range []string{sys, "kube-system"} {
		l, _ := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		for _, p := range l.Items {
			if strings.HasPrefix(p.Name, "ztunnel-cleanup-") || strings.HasPrefix(p.Name, "ambient-kernel-check-") {
				t.Errorf("helper pod %s/%s left", ns, p.Name)
			}
		}
	}
	// Kept, by design: the CRDs and the namespace.
	crds := apiextclient.NewForConfigOrDie(f.Config)
	for _, name := range []string{"authorizationpolicies.security.istio.io", "gateways.gateway.networking.k8s.io"} {
		if _, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s should be kept: %v", name, err)
		}
	}
	if _, err := f.Client.CoreV1().Namespaces().Get(ctx, sys, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace %s should be kept: %v", sys, err)
	}
}

// nodeBPFFS is the capture directory of the node's bpffs (hostPath
// /sys/fs/bpf/ambient); an external cluster's nodes cannot be inspected.
func nodeBPFFS(f *framework.T, node string) string {
	f.Helper()
	if f.StateDir == "" {
		f.Skip("node bpffs inspection needs the local cluster")
	}
	return filepath.Join(f.StateDir, "nodes", node, "bpffs", "ambient")
}

// pinFiles lists the pinned objects (non-directories) under dir.
func pinFiles(t testing.TB, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// kernelObjects are the IDs of what capture pinned on a node.
type kernelObjects struct {
	links, progs, maps []uint32
}

func pinnedObjects(t testing.TB, dir string) kernelObjects {
	var ko kernelObjects
	for _, p := range pinFiles(t, dir) {
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			info, err := l.Info()
			if err == nil {
				ko.links = append(ko.links, uint32(info.ID))
				ko.progs = append(ko.progs, uint32(info.Program))
			}
			l.Close()
			continue
		}
		if m, err := ebpf.LoadPinnedMap(p, nil); err == nil {
			if info, err := m.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ko.maps = append(ko.maps, uint32(id))
				}
			}
			m.Close()
			continue
		}
		if pr, err := ebpf.LoadPinnedProgram(p, nil); err == nil {
			if info, err := pr.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ko.progs = append(ko.progs, uint32(id))
				}
			}
			pr.Close()
		}
	}
	return ko
}

// stillLoaded says which of the objects the kernel still holds (links
// attached to veths, programs, maps).
func (ko kernelObjects) stillLoaded() error {
	var left []string
	for _, id := range ko.links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		}
	}
	for _, id := range ko.progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	for _, id := range ko.maps {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("still loaded: %s", strings.Join(left, ", "))
	}
	return nil
}
