package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/dump"
	"github.com/ambient-mesh/ambient/ctl/internal/install"
)

// Where the debug endpoints are.
const (
	ztunnelAdminPort   = "15000"
	istiodMonitorPort  = "15014"
	ztunnelSelector    = "app=ztunnel"
	istiodSelector     = "app=istiod-lite"
	waypointPodsLabels = "gateway.istio.io/managed=istio.io-mesh-controller"
)

// proxyGet GETs path on a pod's port through the API server (pods/proxy), so
// it works wherever kubectl works, without port-forwarding.
func proxyGet(ctx context.Context, c *Clients, ns, pod, port, path string) ([]byte, error) {
	b, err := c.Kube.CoreV1().Pods(ns).ProxyGet("http", pod, port, path, nil).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET %s on pod %s/%s port %s (through the API server's pods/proxy): %w", path, ns, pod, port, err)
	}
	return b, nil
}

// pickZtunnel chooses whose /config_dump to read: the pod named pod, else
// the one on node, else — like istioctl, which takes the first ztunnel pod —
// the ztunnel on the first node by name, preferring a Running one. note tells
// which one was picked when the user did not choose and there were several.
func pickZtunnel(pods []corev1.Pod, node, pod string) (picked *corev1.Pod, note string, err error) {
	sorted := make([]*corev1.Pod, 0, len(pods))
	var nodes []string
	for i := range pods {
		sorted = append(sorted, &pods[i])
		nodes = append(nodes, pods[i].Spec.NodeName)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Spec.NodeName != b.Spec.NodeName {
			return a.Spec.NodeName < b.Spec.NodeName
		}
		return a.Name < b.Name
	})
	sort.Strings(nodes)
	if len(pods) == 0 {
		return nil, "", fmt.Errorf("no ztunnel pod in %s: run `ambientctl install`", install.Namespace)
	}
	for _, p := range sorted {
		switch {
		case pod != "" && p.Name == pod && (node == "" || p.Spec.NodeName == node):
			return p, "", nil
		case pod == "" && node != "" && p.Spec.NodeName == node:
			return p, "", nil
		}
	}
	switch {
	case pod != "":
		return nil, "", fmt.Errorf("no ztunnel pod %q in %s: see `kubectl -n %s get pods -l %s -o wide`", pod, install.Namespace, install.Namespace, ztunnelSelector)
	case node != "":
		return nil, "", fmt.Errorf("no ztunnel pod on node %q: ztunnel runs on %s", node, strings.Join(nodes, ", "))
	}
	picked = sorted[0]
	for _, p := range sorted {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			picked = p
			break
		}
	}
	if len(pods) > 1 {
		note = fmt.Sprintf("showing ztunnel %s on node %s (ztunnel runs on %s; choose with --node)", picked.Name, picked.Spec.NodeName, strings.Join(nodes, ", "))
	}
	return picked, note, nil
}

func (r *root) ztunnelConfigCmd() *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "ztunnel-config",
		Short: "Show what a node's ztunnel knows (from its /config_dump)",
		Long: `Read the admin endpoint /config_dump (port 15000) of one ztunnel through the API
server and print one section. -o json prints the section exactly as ztunnel sent it.

Which ztunnel: the pod given as the argument, else the one on --node, else (as istioctl
does) the ztunnel on the first node by name, preferring a running pod; a note on stderr
says which one when there are several. Workloads, services and policies are the same
in every ztunnel; certificates and connections are those of that node's pods.`,
		Example: `  ambientctl ztunnel-config workloads
  ambientctl ztunnel-config workloads --node node1
  ambientctl ztunnel-config certificates ztunnel-x7k2p -o json`,
	}
	cmd.PersistentFlags().StringVar(&node, "node", "", "node whose ztunnel to ask (default: the first node by name)")
	_ = cmd.RegisterFlagCompletionFunc("node", r.completeNodes)
	for _, s := range dump.Sections {
		cmd.AddCommand(&cobra.Command{
			Use:               s + " [ztunnel-pod]",
			Short:             "Show ztunnel's " + s,
			Example:           fmt.Sprintf("  ambientctl ztunnel-config %s\n  ambientctl ztunnel-config %s --node node1 -o yaml", s, s),
			Args:              cobra.MaximumNArgs(1),
			ValidArgsFunction: r.completeZtunnelPods,
			RunE: func(cmd *cobra.Command, args []string) error {
				podName := ""
				if len(args) == 1 {
					podName = args[0]
				}
				c, err := r.clients()
				if err != nil {
					return err
				}
				ctx := cmd.Context()
				pods, err := c.Kube.CoreV1().Pods(install.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ztunnelSelector})
				if err != nil {
					return fmt.Errorf("list ztunnel pods: %w", err)
				}
				pod, note, err := pickZtunnel(pods.Items, node, podName)
				if err != nil {
					return err
				}
				if note != "" {
					fmt.Fprintln(r.env.Err, "note:", note)
				}
				b, err := proxyGet(ctx, c, pod.Namespace, pod.Name, ztunnelAdminPort, "/config_dump")
				if err != nil {
					return err
				}
				d, err := dump.ParseConfigDump(b)
				if err != nil {
					return err
				}
				raw := d.Section(s)
				rows, err := dump.Table(s, raw, r.env.Now())
				if err != nil && r.output == "table" {
					return err
				}
				return r.print(rows, raw)
			},
		})
	}
	return cmd
}

func (r *root) completeZtunnelPods(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := r.clients()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	l, err := c.Kube.CoreV1().Pods(install.Namespace).List(cmd.Context(), metav1.ListOptions{LabelSelector: ztunnelSelector})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, p := range l.Items {
		names = append(names, p.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (r *root) completeNodes(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	c, err := r.clients()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	l, err := c.Kube.CoreV1().Nodes().List(cmd.Context(), metav1.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, n := range l.Items {
		names = append(names, n.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (r *root) proxyStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "proxy-status",
		Short: "Show whether each ztunnel and waypoint is in sync with istiod-lite",
		Long: `List the ztunnel and waypoint pods and, from each istiod-lite replica's
/debug/connections (port 15014), which replica they are connected to and, per resource type,
whether the last push was acknowledged (SYNCED), is pending (STALE) or was rejected (NACK).`,
		Example: `  ambientctl proxy-status
  ambientctl proxy-status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.clients()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var proxies []dump.Proxy
			for _, q := range []struct{ ns, sel string }{{install.Namespace, ztunnelSelector}, {metav1.NamespaceAll, waypointPodsLabels}} {
				l, err := c.Kube.CoreV1().Pods(q.ns).List(ctx, metav1.ListOptions{LabelSelector: q.sel})
				if err != nil {
					return fmt.Errorf("list pods %s: %w", q.sel, err)
				}
				for _, p := range l.Items {
					proxies = append(proxies, dump.Proxy{Namespace: p.Namespace, Name: p.Name})
				}
			}
			istiods, err := c.Kube.CoreV1().Pods(install.Namespace).List(ctx, metav1.ListOptions{LabelSelector: istiodSelector})
			if err != nil {
				return fmt.Errorf("list istiod-lite pods: %w", err)
			}
			if len(istiods.Items) == 0 {
				return fmt.Errorf("no istiod-lite pod in %s: run `ambientctl install`", install.Namespace)
			}
			byIstiod := map[string][]dump.Connection{}
			for _, p := range istiods.Items {
				b, err := proxyGet(ctx, c, p.Namespace, p.Name, istiodMonitorPort, "/debug/connections")
				if err == nil {
					byIstiod[p.Name], err = dump.ParseConnections(b)
				}
				if err != nil {
					fmt.Fprintf(r.env.Err, "warning: %v\n", err)
				}
			}
			es := dump.MatchProxies(proxies, byIstiod)
			return r.print(dump.ProxyStatusRows(es), es)
		},
	}
}
