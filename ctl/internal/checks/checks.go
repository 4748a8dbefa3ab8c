package checks

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/ambient-mesh/ambient/ctl/internal/install"
	"github.com/ambient-mesh/ambient/ctl/internal/kernel"
	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Status of one check.
type Status string

// Statuses, worst last.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is the outcome of one check.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// MinKubeMinor is the oldest supported Kubernetes minor version (1.x).
const MinKubeMinor = 30

// KubeVersion checks the API server is at least 1.30.
func KubeVersion(v *version.Info) Result {
	r := Result{Check: "kubernetes-version"}
	major, err1 := strconv.Atoi(strings.TrimRight(v.Major, "+"))
	minor, err2 := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	switch {
	case err1 != nil || err2 != nil:
		r.Status, r.Message = Warn, fmt.Sprintf("cannot parse the server version %q.%q; ambient needs 1.%d or newer", v.Major, v.Minor, MinKubeMinor)
	case major < 1 || major == 1 && minor < MinKubeMinor:
		r.Status, r.Message = Fail, fmt.Sprintf("Kubernetes %s.%s is too old: upgrade the cluster to 1.%d or newer", v.Major, v.Minor, MinKubeMinor)
	default:
		r.Status, r.Message = OK, fmt.Sprintf("Kubernetes %s", v.GitVersion)
	}
	return r
}

// Nodes checks that the cluster has nodes to run ztunnel on.
func Nodes(nodes []corev1.Node) Result {
	r := Result{Check: "nodes"}
	ready := 0
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	switch {
	case len(nodes) == 0:
		r.Status, r.Message = Fail, "the cluster has no nodes: add a node before installing"
	case ready == 0:
		r.Status, r.Message = Fail, fmt.Sprintf("none of the %d nodes is Ready: check `kubectl get nodes`", len(nodes))
	case ready < len(nodes):
		r.Status, r.Message = Warn, fmt.Sprintf("%d of %d nodes Ready", ready, len(nodes))
	default:
		r.Status, r.Message = OK, fmt.Sprintf("%d nodes Ready", ready)
	}
	return r
}

// CRD is the part of a CustomResourceDefinition the conflict check needs.
type CRD struct {
	Name string
	// BundleVersion is the gateway.networking.k8s.io/bundle-version annotation.
	BundleVersion string
	// Channel is the gateway.networking.k8s.io/channel annotation.
	Channel string
}

// CRDConflicts compares the CRDs in the cluster with the ones the base chart
// ships. Helm never replaces an existing CRD, so a different Gateway API
// bundle or channel, or Istio CRDs from another install, stay as they are.
func CRDConflicts(existing, shipped []CRD) Result {
	r := Result{Check: "crds"}
	have := map[string]CRD{}
	for _, c := range existing {
		have[c.Name] = c
	}
	var conflicts []string
	for _, s := range shipped {
		e, ok := have[s.Name]
		if !ok {
			continue
		}
		switch {
		case strings.HasSuffix(s.Name, ".istio.io"):
			conflicts = append(conflicts, s.Name+" (already installed, by Istio or an earlier ambient install)")
		case e.BundleVersion != s.BundleVersion || e.Channel != s.Channel:
			conflicts = append(conflicts, fmt.Sprintf("%s (%s %s, ambient ships %s %s)", s.Name, orUnknown(e.Channel), orUnknown(e.BundleVersion), s.Channel, s.BundleVersion))
		}
	}
	sort.Strings(conflicts)
	if len(conflicts) == 0 {
		r.Status, r.Message = OK, "no conflicting CRDs"
		return r
	}
	r.Status = Warn
	r.Message = "existing CRDs will be kept as they are: " + strings.Join(conflicts, "; ")
	return r
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Istiod checks the istiod-lite Deployment (nil when absent).
func Istiod(d *appsv1.Deployment) Result {
	r := Result{Check: "istiod-lite"}
	if d == nil {
		r.Status, r.Message = Fail, "Deployment istio-system/istiod-lite not found: run `ambientctl install`"
		return r
	}
	ok, msg := install.DeploymentReady(d)
	if !ok {
		r.Status, r.Message = Fail, msg+": check `kubectl -n istio-system get pods -l app=istiod-lite`"
		return r
	}
	r.Status, r.Message = OK, msg
	return r
}

// ZtunnelPerNode checks that every schedulable node runs a ready ztunnel pod.
func ZtunnelPerNode(nodes []corev1.Node, ztunnels []corev1.Pod) Result {
	r := Result{Check: "ztunnel"}
	readyOn := map[string]bool{}
	for _, p := range ztunnels {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				readyOn[p.Spec.NodeName] = true
			}
		}
	}
	var missing []string
	for _, n := range nodes {
		if !readyOn[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		r.Status = Fail
		r.Message = fmt.Sprintf("no ready ztunnel on %s: enrolled pods there have no mesh; check `kubectl -n istio-system get pods -l app=ztunnel -o wide`", strings.Join(missing, ", "))
		return r
	}
	r.Status, r.Message = OK, fmt.Sprintf("a ready ztunnel on each of %d nodes", len(nodes))
	return r
}

// RootCert checks istiod-lite published istio-ca-root-cert in istio-system.
func RootCert(cm *corev1.ConfigMap) Result {
	r := Result{Check: "root-cert"}
	switch {
	case cm == nil:
		r.Status, r.Message = Fail, "ConfigMap istio-system/istio-ca-root-cert not found: istiod-lite has not published its root; check its logs"
	case cm.Data["root-cert.pem"] == "":
		r.Status, r.Message = Fail, "ConfigMap istio-system/istio-ca-root-cert has no root-cert.pem: check istiod-lite's logs"
	default:
		r.Status, r.Message = OK, "istio-ca-root-cert published"
	}
	return r
}

// Worst returns the worst status of rs.
func Worst(rs []Result) Status {
	w := OK
	for _, r := range rs {
		if r.Status == Fail || r.Status == Warn && w == OK {
			w = r.Status
		}
	}
	return w
}

// Rows: CHECK STATUS MESSAGE.
func Rows(rs []Result) printer.Rows {
	out := printer.Rows{Header: []string{"CHECK", "STATUS", "MESSAGE"}}
	for _, r := range rs {
		out.Rows = append(out.Rows, []string{r.Check, string(r.Status), r.Message})
	}
	return out
}

// NodeKernel is the kernel probe's outcome on one node: the features it
// lacks, or why the probe gave no answer (Unknown).
type NodeKernel struct {
	Node    string
	Missing []kernel.Feature
	Unknown string
}

// Kernel checks every node's kernel has what capture needs. A node without a
// feature fails; a node the probe could not run on is a warning.
func Kernel(nodes []NodeKernel) Result {
	r := Result{Check: "kernel"}
	var bad, unknown []string
	for _, n := range nodes {
		switch {
		case len(n.Missing) > 0:
			bad = append(bad, fmt.Sprintf("node %s lacks %s", n.Node, kernel.Describe(n.Missing)))
		case n.Unknown != "":
			unknown = append(unknown, fmt.Sprintf("node %s: %s", n.Node, n.Unknown))
		}
	}
	sort.Strings(bad)
	sort.Strings(unknown)
	switch {
	case len(bad) > 0:
		r.Status = Fail
		r.Message = strings.Join(bad, "; ") + ": ztunnel cannot capture traffic there; use nodes with Linux 6.6 or newer, or keep ztunnel off them (--set ztunnel.nodeSelector...)"
	case len(unknown) > 0:
		r.Status = Warn
		r.Message = "could not probe the kernel: " + strings.Join(unknown, "; ") + " (load the ambientctl image on the nodes, or pass --kernel-image)"
	case len(nodes) == 0:
		r.Status, r.Message = Warn, "no Linux node to probe"
	default:
		r.Status, r.Message = OK, fmt.Sprintf("eBPF (SOCKMAP, sk_assign, sk_lookup, TCX) on %d nodes", len(nodes))
	}
	return r
}
