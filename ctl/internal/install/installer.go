package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ambient-mesh/ambient/charts"
)

// Namespace is where the mesh is installed.
const Namespace = "istio-system"

// Installer applies and removes the embedded charts.
type Installer struct {
	Helm      *action.Configuration // initialised for Namespace
	Kube      kubernetes.Interface  // for rollout status; nil skips waiting
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
		c, err := charts.Load(name)
		if err != nil {
			return "", err
		}
		inst := action.NewInstall(&action.Configuration{})
		inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
		inst.ReleaseName, inst.Namespace = name, namespace
		inst.IncludeCRDs = true
		inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
		rel, err := inst.Run(c, vals[name])
		if err != nil {
			return "", fmt.Errorf("render chart %s: %w", name, err)
		}
		b.WriteString(rel.Manifest)
	}
	return b.String(), nil
}

// Uninstall removes the releases in reverse order, skipping absent ones, then
// waits until no ztunnel pod is left: each ztunnel's capture role detaches
// and unpins its eBPF programs when it stops, so the nodes are clean only
// when those pods are gone. CRDs stay (Helm never deletes crds/).
func (in *Installer) Uninstall(ctx context.Context, timeout time.Duration) error {
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
	return in.poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		pods, err := in.Kube.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=ztunnel"})
		if err != nil {
			return false, "", fmt.Errorf("list ztunnel pods: %w", err)
		}
		if n := len(pods.Items); n > 0 {
			return false, fmt.Sprintf("ztunnel: %d pods still stopping (they remove the eBPF programs)", n), nil
		}
		return true, "ztunnel: all pods gone", nil
	}, func() string {
		return "ztunnel pods did not stop: check `kubectl -n " + in.Namespace + " get pods -l app=ztunnel`; the nodes may keep pinned programs under /sys/fs/bpf/ambient"
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
