package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/waypoint"
)

//lint:ignore ST1005 the message starts with the API's name
var errNoGatewayAPI = errors.New("Gateway API CRDs are not installed: run `ambientctl install` first")

// requireGatewayAPI fails with errNoGatewayAPI when the cluster does not
// serve gateway.networking.k8s.io/v1 Gateways.
func requireGatewayAPI(d discovery.DiscoveryInterface) error {
	l, err := d.ServerResourcesForGroupVersion(gwv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return errNoGatewayAPI
	}
	if err != nil {
		return fmt.Errorf("discover the Gateway API: %w", err)
	}
	for _, r := range l.APIResources {
		if r.Name == "gateways" {
			return nil
		}
	}
	return errNoGatewayAPI
}

type waypointOpts struct {
	name, forType   string
	enrollNamespace bool
	wait            bool
	timeout         time.Duration
	all             bool
	allNamespaces   bool
}

func (r *root) waypointCmd() *cobra.Command {
	o := &waypointOpts{}
	cmd := &cobra.Command{
		Use:   "waypoint",
		Short: "Manage waypoints (L7 proxies) for a namespace",
		Long: `A waypoint is a Gateway of class istio-waypoint; istiod-lite deploys a waypoint proxy
for it. Bind workloads to it with the label istio.io/use-waypoint=<name> on a namespace,
service or pod (--enroll-namespace does it for the namespace).`,
		Example: `  ambientctl waypoint apply -n default --enroll-namespace --wait
  ambientctl waypoint list -A
  ambientctl waypoint status -n default
  ambientctl waypoint delete -n default --all`,
	}
	cmd.PersistentFlags().StringVar(&o.name, "name", waypoint.DefaultName, "waypoint (Gateway) name")
	cmd.AddCommand(r.waypointApplyCmd(o), r.waypointListCmd(o), r.waypointStatusCmd(o), r.waypointDeleteCmd(o))
	return cmd
}

func (r *root) waypointSetup() (*Clients, string, error) {
	c, err := r.clients()
	if err != nil {
		return nil, "", err
	}
	if err := requireGatewayAPI(c.Kube.Discovery()); err != nil {
		return nil, "", err
	}
	ns, err := r.namespace()
	return c, ns, err
}

func (r *root) waypointApplyCmd(o *waypointOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Create or update a waypoint, like istioctl waypoint apply",
		Example: `  ambientctl waypoint apply -n default
  ambientctl waypoint apply -n default --name reviews-wp --for workload
  ambientctl waypoint apply -n default --enroll-namespace --wait --timeout 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := waypoint.ValidateFor(o.forType); err != nil {
				return err
			}
			c, ns, err := r.waypointSetup()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %q not found: create it first (kubectl create namespace %s)", ns, ns)
			}
			want := waypoint.Gateway(ns, o.name, o.forType)
			gws := c.Gateway.GatewayV1().Gateways(ns)
			old, err := gws.Get(ctx, o.name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				if _, err := gws.Create(ctx, want, metav1.CreateOptions{}); err != nil {
					return fmt.Errorf("create waypoint %s/%s: %w", ns, o.name, err)
				}
				fmt.Fprintf(r.env.Out, "✔ waypoint %s/%s applied\n", ns, o.name)
			case err != nil:
				return fmt.Errorf("get waypoint %s/%s: %w", ns, o.name, err)
			case !waypoint.IsWaypoint(old):
				return fmt.Errorf("gateway %s/%s exists with class %q: pick another --name", ns, o.name, old.Spec.GatewayClassName)
			default:
				if _, err := gws.Update(ctx, waypoint.Merge(old, want), metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("update waypoint %s/%s: %w", ns, o.name, err)
				}
				fmt.Fprintf(r.env.Out, "✔ waypoint %s/%s updated\n", ns, o.name)
			}
			if o.enrollNamespace {
				if err := setNamespaceLabel(ctx, c.Kube, ns, waypoint.UseLabel, o.name, true); err != nil {
					return err
				}
				fmt.Fprintf(r.env.Out, "✔ namespace %s labelled %s=%s\n", ns, waypoint.UseLabel, o.name)
			}
			if o.wait {
				return r.waitProgrammed(ctx, c, ns, o.name, o.timeout)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.forType, "for", waypoint.DefaultFor, "traffic the waypoint handles: service|workload|all|none")
	f.BoolVar(&o.enrollNamespace, "enroll-namespace", false, "label the namespace istio.io/use-waypoint=<name>")
	f.BoolVar(&o.wait, "wait", false, "wait until the waypoint is Programmed")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long --wait waits")
	_ = cmd.RegisterFlagCompletionFunc("for", cobra.FixedCompletions(waypoint.ForValues, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (r *root) waitProgrammed(ctx context.Context, c *Clients, ns, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		g, err := c.Gateway.GatewayV1().Gateways(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && waypoint.Programmed(g) == "True" {
			fmt.Fprintf(r.env.Out, "✔ waypoint %s/%s programmed\n", ns, name)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waypoint %s/%s not programmed after %s: see `ambientctl waypoint status -n %s --name %s` and `kubectl -n %s get pods`", ns, name, timeout, ns, name, ns)
		case <-time.After(max(r.env.Poll, 100*time.Millisecond)):
		}
	}
}

func (r *root) listWaypoints(ctx context.Context, c *Clients, ns string) ([]gwv1.Gateway, error) {
	l, err := c.Gateway.GatewayV1().Gateways(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list gateways: %w", err)
	}
	var out []gwv1.Gateway
	for _, g := range l.Items {
		if waypoint.IsWaypoint(&g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (r *root) waypointListCmd(o *waypointOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List waypoints",
		Example: `  ambientctl waypoint list -n default
  ambientctl waypoint list -A -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := r.waypointSetup()
			if err != nil {
				return err
			}
			if o.allNamespaces {
				ns = metav1.NamespaceAll
			}
			gs, err := r.listWaypoints(cmd.Context(), c, ns)
			if err != nil {
				return err
			}
			if gs == nil {
				gs = []gwv1.Gateway{}
			}
			return r.print(waypoint.ListRows(gs), gs)
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list waypoints of every namespace")
	return cmd
}

func (r *root) waypointStatusCmd(o *waypointOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show a waypoint's conditions",
		Example: `  ambientctl waypoint status -n default
  ambientctl waypoint status -n default --name reviews-wp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := r.waypointSetup()
			if err != nil {
				return err
			}
			g, err := c.Gateway.GatewayV1().Gateways(ns).Get(cmd.Context(), o.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("waypoint %q not found in namespace %s: see `ambientctl waypoint list -A`", o.name, ns)
			}
			if err != nil {
				return fmt.Errorf("get waypoint %s/%s: %w", ns, o.name, err)
			}
			return r.print(waypoint.StatusRows([]gwv1.Gateway{*g}), g.Status)
		},
	}
}

func (r *root) waypointDeleteCmd(o *waypointOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete [name...]",
		Short: "Delete waypoints",
		Long: `Delete the named waypoints (or --name, or every waypoint of the namespace with --all).
Namespaces, services and pods labelled istio.io/use-waypoint=<name> keep the label; traffic
to them is no longer sent through a waypoint.`,
		Example: `  ambientctl waypoint delete -n default
  ambientctl waypoint delete -n default wp1 wp2
  ambientctl waypoint delete -n default --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := r.waypointSetup()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			names := args
			switch {
			case o.all:
				gs, err := r.listWaypoints(ctx, c, ns)
				if err != nil {
					return err
				}
				names = nil
				for _, g := range gs {
					names = append(names, g.Name)
				}
				if len(names) == 0 {
					fmt.Fprintf(r.env.Out, "no waypoints in namespace %s\n", ns)
					return nil
				}
			case len(names) == 0:
				names = []string{o.name}
			}
			for _, n := range names {
				g, err := c.Gateway.GatewayV1().Gateways(ns).Get(ctx, n, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("waypoint %q not found in namespace %s: see `ambientctl waypoint list -A`", n, ns)
				}
				if err != nil {
					return fmt.Errorf("get waypoint %s/%s: %w", ns, n, err)
				}
				if !waypoint.IsWaypoint(g) {
					return fmt.Errorf("gateway %s/%s is not a waypoint (class %q): not deleting it", ns, n, g.Spec.GatewayClassName)
				}
				if err := c.Gateway.GatewayV1().Gateways(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
					return fmt.Errorf("delete waypoint %s/%s: %w", ns, n, err)
				}
				fmt.Fprintf(r.env.Out, "✔ waypoint %s/%s deleted\n", ns, n)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "delete every waypoint in the namespace")
	return cmd
}
