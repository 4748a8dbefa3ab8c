package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/ambient-mesh/ambient/charts"
)

// Namespace is where the mesh is installed.
const Namespace = "istio-system"

// Installer applies and removes the embedded charts.
type Installer struct {
	Helm      *action.Configuration // initialised for Namespace
	Kube      kubernetes.Interface  // for rollout status; nil skips waiting
	Gateway   gwclient.Interface    // removes the waypoint GatewayClass on uninstall; nil skips it
	Namespace string
	Out       io.Writer     // progress
	Poll      time.Duration // status poll interval; default 2s
}

// Apply installs each chart, or upgrades it when a release exists (so running
// it twice is harmless). vals come from SplitValues.
func (in *Installer) Apply(ctx context.Context, vals map[string]map[string]any, timeout time.Duration) error {
	for _, name := range charts.All {
		c, err := charts.Load(name)
		if err != nil {
			return err
		}
		last, err := in.Helm.Releases.Last(name)
		if err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
			return fmt.Errorf("read Helm release %s in %s: %w", name, in.Namespace, err)
		}
		if last == nil || last.Info.Status == release.StatusUninstalled || !in.hasDeployed(name) {
			inst := action.NewInstall(in.Helm)
			inst.ReleaseName = name
			inst.Namespace = in.Namespace
			inst.CreateNamespace = true
			inst.Replace = last != nil // reuse the name of a failed or uninstalled release
			inst.Timeout = timeout
			rel, err := inst.RunWithContext(ctx, c, vals[name])
			if err != nil {
				return fmt.Errorf("install chart %s: %w", name, err)
			}
			fmt.Fprintf(in.Out, "✔ %s installed (revision %d)\n", name, rel.Version)
			continue
		}
		up := action.NewUpgrade(in.Helm)
		up.Namespace = in.Namespace
		up.Timeout = timeout
		up.MaxHistory = 5
		// This run's values only, as for a first install (Helm's default
		// would reuse the last release's values when none are given).
		up.ResetValues = true
		rel, err := up.RunWithContext(ctx, name, c, vals[name])
		if err != nil {
			return fmt.Errorf("upgrade chart %s: %w", name, err)
		}
		fmt.Fprintf(in.Out, "✔ %s upgraded (revision %d)\n", name, rel.Version)
	}
	return nil
}

func (in *Installer) hasDeployed(name string) bool {
	rel, err := in.Helm.Releases.Deployed(name)
	return err == nil && rel != nil
}

// Render returns the manifests Apply would create, without a cluster.
func Render(vals map[string]map[string]any, namespace string) (string, error) {
	var b strings.Builder
	for _, name := range charts.All {
		m, err := renderChart(name, vals[name], namespace)
		if err != nil {
			return "", err
		}
		b.WriteString(m)
	}
	return b.String(), nil
}

func renderChart(name string, vals map[string]any, namespace string) (string, error) {
	c, err := charts.Load(name)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = name, namespace
	inst.IncludeCRDs = true
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
	rel, err := inst.Run(c, vals)
	if err != nil {
		return "", fmt.Errorf("render chart %s: %w", name, err)
	}
	return rel.Manifest, nil
}

// Uninstall removes the mesh:
//  1. the releases, in reverse install order (absent ones are skipped);
//  2. waits until no ztunnel or istiod-lite pod is left (a stopping
//     istiod-lite could otherwise publish again what step 3 deletes);
//  3. what istiod-lite created at run time: the Lease, the self-signed root
//     Secret istio-ca-secret, the istio-ca-root-cert ConfigMaps of every
//     namespace, and the istio-waypoint GatewayClass when no Gateway uses it;
//  4. runs a cleanup pod on every node that detaches capture's eBPF programs
//     and removes its pins, routing rules and nftables table (the capture
//     container leaves them in place when it stops, by design).
//
// Kept: the CRDs (Helm never deletes crds/; they may predate the mesh and
// hold user objects), the namespace, user objects (Gateways, routes,
// policies, the cacerts Secret) and the enrollment labels.
func (in *Installer) Uninstall(ctx context.Context, timeout time.Duration) error {
	spec, specErr := in.cleanupSpec(ctx) // while the release still says how ztunnel ran
	for i := len(charts.All) - 1; i >= 0; i-- {
		name := charts.All[i]
		un := action.NewUninstall(in.Helm)
		un.Timeout = timeout
		_, err := un.Run(name)
		switch {
		case errors.Is(err, driver.ErrReleaseNotFound):
			fmt.Fprintf(in.Out, "- %s not installed\n", name)
		case err != nil:
			return fmt.Errorf("uninstall %s: %w", name, err)
		default:
			fmt.Fprintf(in.Out, "✔ %s removed\n", name)
		}
	}
	if in.Kube == nil {
		return nil
	}
	if _, err := in.Kube.CoreV1().Namespaces().Get(ctx, in.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		fmt.Fprintf(in.Out, "- namespace %s absent: nothing else to remove\n", in.Namespace)
		return nil
	}
	for _, sel := range []string{"app=ztunnel", "app=istiod-lite"} {
		if err := in.waitNoPods(ctx, timeout, sel, strings.TrimPrefix(sel, "app=")+" pods"); err != nil {
			return err
		}
	}
	if err := in.removeRuntimeObjects(ctx); err != nil {
		return err
	}
	if specErr != nil {
		return fmt.Errorf("cannot clean the nodes' eBPF state: %w", specErr)
	}
	nl, err := in.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	nodes := CleanupNodes(nl.Items, spec.NodeSelector)
	if len(nodes) == 0 {
		return nil
	}
	if err := in.cleanupNodes(ctx, spec, nodes, timeout); err != nil {
		return err
	}
	fmt.Fprintf(in.Out, "✔ eBPF programs and pins removed from %d nodes\n", len(nodes))
	return nil
}

// cleanupSpec finds how ztunnel's capture ran: the ztunnel release's
// manifest, else the live DaemonSet, else the chart's defaults.
func (in *Installer) cleanupSpec(ctx context.Context) (CleanupSpec, error) {
	var ds *appsv1.DaemonSet
	if rel, err := in.Helm.Releases.Last(charts.Ztunnel); err == nil && rel != nil {
		ds, _ = DaemonSetFromManifest(rel.Manifest)
	}
	if ds == nil && in.Kube != nil {
		if live, err := in.Kube.AppsV1().DaemonSets(in.Namespace).Get(ctx, "ztunnel", metav1.GetOptions{}); err == nil {
			ds = live
		}
	}
	if ds == nil {
		m, err := renderChart(charts.Ztunnel, nil, in.Namespace)
		if err != nil {
			return CleanupSpec{}, err
		}
		if ds, err = DaemonSetFromManifest(m); err != nil {
			return CleanupSpec{}, err
		}
	}
	return CleanupSpecFrom(ds)
}

// Objects istiod-lite creates at run time (see istiod-lite/ca, app,
// waypointctl).
const (
	istiodLease        = "istiod-lite"
	selfSignedSecret   = "istio-ca-secret"
	rootCertConfigMap  = "istio-ca-root-cert"
	rootCertLabel      = "istio.io/config=true"
	waypointClass      = "istio-waypoint"
	waypointController = "istio.io/mesh-controller"
)

func (in *Installer) removeRuntimeObjects(ctx context.Context) error {
	var errs []error
	ignore := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", what, err))
		}
	}
	ignore("Lease "+istiodLease, in.Kube.CoordinationV1().Leases(in.Namespace).Delete(ctx, istiodLease, metav1.DeleteOptions{}))
	ignore("Secret "+selfSignedSecret, in.Kube.CoreV1().Secrets(in.Namespace).Delete(ctx, selfSignedSecret, metav1.DeleteOptions{}))
	cms, err := in.Kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: rootCertLabel})
	if err != nil {
		return fmt.Errorf("list root certificate ConfigMaps: %w", err)
	}
	n := 0
	for _, cm := range cms.Items {
		if cm.Name == rootCertConfigMap {
			ignore("ConfigMap "+cm.Namespace+"/"+cm.Name, in.Kube.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{}))
			n++
		}
	}
	if in.Gateway != nil {
		if msg, err := in.removeGatewayClass(ctx); err != nil {
			errs = append(errs, err)
		} else if msg != "" {
			fmt.Fprintln(in.Out, msg)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(in.Out, "✔ istiod-lite's run-time objects removed (root Secret, Lease, %d root certificate ConfigMaps)\n", n)
	return nil
}

// removeGatewayClass deletes istio-waypoint unless a Gateway still uses it;
// then it says which waypoints are left.
func (in *Installer) removeGatewayClass(ctx context.Context) (string, error) {
	gc, err := in.Gateway.GatewayV1().GatewayClasses().Get(ctx, waypointClass, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && string(gc.Spec.ControllerName) != waypointController {
		return "", nil
	}
	if err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return "", nil
		}
		return "", fmt.Errorf("get GatewayClass %s: %w", waypointClass, err)
	}
	gws, err := in.Gateway.GatewayV1().Gateways(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list Gateways: %w", err)
	}
	var left []string
	for _, g := range gws.Items {
		if string(g.Spec.GatewayClassName) == waypointClass {
			left = append(left, g.Namespace+"/"+g.Name)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return fmt.Sprintf("! kept GatewayClass %s: waypoints %s still use it (their pods no longer get config); remove them with `ambientctl waypoint delete --all -n <namespace>`", waypointClass, strings.Join(left, ", ")), nil
	}
	if err := in.Gateway.GatewayV1().GatewayClasses().Delete(ctx, waypointClass, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete GatewayClass %s: %w", waypointClass, err)
	}
	return "✔ GatewayClass " + waypointClass + " removed", nil
}

// waitNoPods waits until no pod matches sel in the namespace.
func (in *Installer) waitNoPods(ctx context.Context, timeout time.Duration, sel, what string) error {
	return in.poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		pods, err := in.Kube.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, "", fmt.Errorf("list %s: %w", what, err)
		}
		if n := len(pods.Items); n > 0 {
			return false, fmt.Sprintf("%s: %d still stopping", what, n), nil
		}
		return true, what + ": all gone", nil
	}, func() string {
		return fmt.Sprintf("%s did not stop: check `kubectl -n %s get pods -l %s`", what, in.Namespace, sel)
	})
}

// WaitReady waits until istiod-lite and ztunnel are rolled out, printing each
// change of progress; on timeout it says which pods are not ready and why.
func (in *Installer) WaitReady(ctx context.Context, timeout time.Duration) error {
	if in.Kube == nil {
		return nil
	}
	check := func(ctx context.Context) (bool, string, error) {
		d, err := in.Kube.AppsV1().Deployments(in.Namespace).Get(ctx, "istiod-lite", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", fmt.Errorf("get Deployment istiod-lite: %w", err)
		}
		dOK, dMsg := false, "Deployment not found"
		if err == nil {
			dOK, dMsg = DeploymentReady(d)
		}
		ds, err := in.Kube.AppsV1().DaemonSets(in.Namespace).Get(ctx, "ztunnel", metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", fmt.Errorf("get DaemonSet ztunnel: %w", err)
		}
		zOK, zMsg := false, "DaemonSet not found"
		if err == nil {
			zOK, zMsg = DaemonSetReady(ds)
		}
		return dOK && zOK, fmt.Sprintf("istiod-lite: %s; ztunnel: %s", dMsg, zMsg), nil
	}
	return in.poll(ctx, timeout, check, func() string { return in.notReadyHint(context.WithoutCancel(ctx)) })
}

func (in *Installer) notReadyHint(ctx context.Context) string {
	var lines []string
	for _, sel := range []string{"app=istiod-lite", "app=ztunnel"} {
		pods, err := in.Kube.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil {
			lines = append(lines, PodProblems(pods.Items)...)
		}
	}
	hint := "check `kubectl -n " + in.Namespace + " get pods`, `kubectl -n " + in.Namespace + " describe pod <pod>` and the logs (`-c proxy` / `-c capture` for ztunnel)"
	if len(lines) == 0 {
		return hint
	}
	return strings.Join(lines, "\n  ") + "\n" + hint
}

// poll calls check until it reports done, printing each new message; on
// timeout the error carries the last message and hint().
func (in *Installer) poll(ctx context.Context, timeout time.Duration, check func(context.Context) (bool, string, error), hint func() string) error {
	every := in.Poll
	if every == 0 {
		every = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		done, msg, err := check(ctx)
		if err != nil {
			return err
		}
		if msg != last {
			fmt.Fprintf(in.Out, "  %s\n", msg)
			last = msg
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s (%s):\n  %s", timeout, last, hint())
		case <-time.After(every):
		}
	}
}
