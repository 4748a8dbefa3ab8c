package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/checks"
	"github.com/ambient-mesh/ambient/ctl/internal/install"
)

func (r *root) installCmd() *cobra.Command {
	var (
		files, sets []string
		timeout     time.Duration
		wait        bool
		dryRun      bool
		skipKernel  bool
		kernelImage string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade the mesh (CRDs, istiod-lite, ztunnel) in istio-system",
		Long: `Install the embedded Helm charts base (CRDs), istiod-lite and ztunnel as releases in
istio-system (created if missing). Running it again upgrades the releases, so it is safe to
repeat; like istioctl install, each run applies the chart defaults plus this run's -f and
--set values only (values of an earlier install are not carried over). Values: "global.*" go to every chart, "istiodLite.*", "ztunnel.*" and "base.*" to one.
Before installing anything it renders every chart (bad values change nothing) and probes
each Linux node's kernel for the eBPF features capture needs, like ` + "`ambientctl check`" + `: a node
lacking one stops the install; a probe that cannot run (e.g. the image is not on the node)
is a warning. It then waits until istiod-lite and a ztunnel on every node are ready.`,
		Example: `  ambientctl install
  ambientctl install --set global.tag=v0.1.0 --set istiodLite.replicaCount=3
  ambientctl install -f my-values.yaml --timeout 10m
  ambientctl install --set istiodLite.caSource=cacerts   # uses the Secret istio-system/cacerts
  ambientctl install --dry-run > mesh.yaml                # print the manifests, touch nothing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := install.LoadValues(files, sets)
			if err != nil {
				return err
			}
			vals, err := install.SplitValues(v)
			if err != nil {
				return err
			}
			if dryRun {
				m, err := install.Render(vals, install.Namespace)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(r.env.Out, m)
				return err
			}
			// Everything is rendered before anything is installed: bad values
			// leave the cluster untouched.
			if _, err := install.Render(vals, install.Namespace); err != nil {
				return err
			}
			c, err := r.clients()
			if err != nil {
				return err
			}
			h, err := r.env.Helm(install.Namespace)
			if err != nil {
				return err
			}
			if !skipKernel {
				if err := r.installKernelGate(cmd.Context(), c, kernelImage); err != nil {
					return err
				}
			}
			in := &install.Installer{Helm: h, Kube: c.Kube, Namespace: install.Namespace, Out: r.env.Out, Poll: r.env.Poll}
			if err := in.Apply(cmd.Context(), vals, timeout); err != nil {
				return fmt.Errorf("%w\ncheck `ambientctl check` and `kubectl -n %s get events`", err, install.Namespace)
			}
			if !wait {
				return nil
			}
			fmt.Fprintln(r.env.Out, "waiting for the mesh to be ready…")
			if err := in.WaitReady(cmd.Context(), timeout); err != nil {
				return err
			}
			fmt.Fprintln(r.env.Out, "✔ ambient mesh ready. Next: ambientctl dataplane enroll <namespace>")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sets, "set", nil, "set a value, e.g. --set global.tag=v1 (repeatable)")
	f.StringSliceVarP(&files, "values", "f", nil, "values file (repeatable; --set wins)")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for each step")
	f.BoolVar(&wait, "wait", true, "wait until istiod-lite and ztunnel are ready")
	f.BoolVar(&dryRun, "dry-run", false, "print the rendered manifests and stop")
	f.BoolVar(&skipKernel, "skip-kernel-check", false, "do not probe the nodes' kernels before installing")
	f.StringVar(&kernelImage, "kernel-image", defaultKernelImage(), "image of the kernel probe pod (ambientctl's own image)")
	return cmd
}

func (r *root) uninstallCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the mesh (ztunnel, istiod-lite, base releases)",
		Long: `Remove the mesh: the Helm releases ztunnel, istiod-lite and base in istio-system; then,
once their pods are gone, what istiod-lite created while running (its Lease, the self-signed
root Secret istio-ca-secret, the istio-ca-root-cert ConfigMap of every namespace, the
istio-waypoint GatewayClass unless waypoints still use it); then the nodes' eBPF state: a
short-lived pod per node runs ztunnel's capture role with --uninstall, which detaches the
programs and removes the pins under the bpffs, the policy routing and the nftables table
(a stopping capture container leaves them in place by design, so enrolled pods never go
out in plaintext during a restart). It waits for each node and fails, naming the node,
if one cannot be cleaned.

Kept: the CRDs (Helm never deletes them; they may hold your objects), the istio-system
namespace (and a cacerts Secret in it), enrollment labels, Gateways, routes and policies.
Running it again is harmless: absent releases are skipped, the node cleanup is idempotent.
`,
		Example: `  ambientctl uninstall
  ambientctl uninstall --timeout 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.clients()
			if err != nil {
				return err
			}
			h, err := r.env.Helm(install.Namespace)
			if err != nil {
				return err
			}
			in := &install.Installer{Helm: h, Kube: c.Kube, Gateway: c.Gateway, Namespace: install.Namespace, Out: r.env.Out, Poll: r.env.Poll}
			if err := in.Uninstall(cmd.Context(), timeout); err != nil {
				return err
			}
			fmt.Fprintln(r.env.Out, "✔ ambient mesh removed (kept: CRDs, namespace istio-system, enrollment labels)")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for each step (pods stopping, node cleanup)")
	return cmd
}

// installKernelGate stops an install onto nodes whose kernel cannot capture;
// a probe that gives no answer only warns.
func (r *root) installKernelGate(ctx context.Context, c *Clients, image string) error {
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	if len(linuxNodes(nodes.Items)) == 0 {
		return nil
	}
	fmt.Fprintln(r.env.Out, "probing the nodes' kernels…")
	res, err := r.kernelCheck(ctx, c, nodes.Items, image, time.Minute)
	if err != nil {
		return err
	}
	switch res.Status {
	case checks.Fail:
		return fmt.Errorf("%s; nothing was installed (--skip-kernel-check to install anyway)", res.Message)
	case checks.Warn:
		fmt.Fprintln(r.env.Err, "warning:", res.Message)
	default:
		fmt.Fprintln(r.env.Out, "✔ kernel:", res.Message)
	}
	return nil
}
