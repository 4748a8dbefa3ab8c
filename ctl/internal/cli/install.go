package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambient-mesh/ambient/ctl/internal/install"
)

func (r *root) installCmd() *cobra.Command {
	var (
		files, sets []string
		timeout     time.Duration
		wait        bool
		dryRun      bool
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade the mesh (CRDs, istiod-lite, ztunnel) in istio-system",
		Long: `Install the embedded Helm charts base (CRDs), istiod-lite and ztunnel as releases in
istio-system (created if missing). Running it again upgrades the releases, so it is safe to
repeat. Values: "global.*" go to every chart, "istiodLite.*", "ztunnel.*" and "base.*" to one.
It then waits until istiod-lite and a ztunnel on every node are ready.`,
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
			c, err := r.clients()
			if err != nil {
				return err
			}
			h, err := r.env.Helm(install.Namespace)
			if err != nil {
				return err
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
	return cmd
}

func (r *root) uninstallCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the mesh (ztunnel, istiod-lite, base releases)",
		Long: `Remove the Helm releases ztunnel, istiod-lite and base from istio-system, then wait
until the ztunnel pods are gone: their capture container detaches and unpins the eBPF
programs on exit, so each node is clean only then. CRDs are kept (Helm never deletes
them); enrolled namespaces keep their labels. Releases that are not installed are skipped.`,
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
			in := &install.Installer{Helm: h, Kube: c.Kube, Namespace: install.Namespace, Out: r.env.Out, Poll: r.env.Poll}
			if err := in.Uninstall(cmd.Context(), timeout); err != nil {
				return err
			}
			fmt.Fprintln(r.env.Out, "✔ ambient mesh removed (CRDs kept)")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the ztunnel pods to stop")
	return cmd
}
