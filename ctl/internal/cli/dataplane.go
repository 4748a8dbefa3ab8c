package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Enrollment labels (Istio's).
const (
	dataplaneLabel = "istio.io/dataplane-mode"
	ambientMode    = "ambient"
	noneMode       = "none"
)

func (r *root) dataplaneCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dataplane",
		Short: "Enroll namespaces in the mesh or take them out",
		Example: `  ambientctl dataplane enroll default
  ambientctl dataplane unenroll default`,
	}
	cmd.AddCommand(r.enrollCmd(true), r.enrollCmd(false))
	return cmd
}

func (r *root) enrollCmd(enroll bool) *cobra.Command {
	use, short, long := "enroll <namespace>", "Enroll a namespace: its pods' traffic goes through ztunnel",
		`Label the namespace istio.io/dataplane-mode=ambient. Enrollment is live: running pods are
captured without a restart, except pods labelled istio.io/dataplane-mode=none and
hostNetwork pods. Prints the pods now captured.`
	example := "  ambientctl dataplane enroll default\n  ambientctl dataplane enroll shop -o json"
	if !enroll {
		use, short, long = "unenroll <namespace>", "Take a namespace out of the mesh",
			`Remove the istio.io/dataplane-mode label from the namespace; its pods' traffic is no
longer captured (pods labelled istio.io/dataplane-mode=ambient themselves stay enrolled).`
		example = "  ambientctl dataplane unenroll default"
	}
	return &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: r.completeNamespaces,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.clients()
			if err != nil {
				return err
			}
			ns := args[0]
			if err := setNamespaceLabel(cmd.Context(), c.Kube, ns, dataplaneLabel, ambientMode, enroll); err != nil {
				return err
			}
			if !enroll {
				fmt.Fprintf(r.env.Err, "namespace %q unenrolled\n", ns)
				return nil
			}
			pods, err := c.Kube.CoreV1().Pods(ns).List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list pods in %s: %w", ns, err)
			}
			captured := capturedPods(pods.Items)
			fmt.Fprintf(r.env.Err, "namespace %q enrolled (%s=%s): %d pods captured\n", ns, dataplaneLabel, ambientMode, len(captured))
			rows := printer.Rows{Header: []string{"NAMESPACE", "POD", "IP", "NODE"}}
			names := []string{}
			for _, p := range captured {
				rows.Rows = append(rows.Rows, []string{p.Namespace, p.Name, p.Status.PodIP, p.Spec.NodeName})
				names = append(names, p.Name)
			}
			return r.print(rows, map[string]any{"namespace": ns, "capturedPods": names})
		},
	}
}

// capturedPods returns the pods of an enrolled namespace that ztunnel
// captures: not opted out, not hostNetwork, not finished.
func capturedPods(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Labels[dataplaneLabel] == noneMode || p.Spec.HostNetwork ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	return out
}

// setNamespaceLabel sets (or removes) a label on a namespace that must exist.
func setNamespaceLabel(ctx context.Context, k kubernetes.Interface, ns, key, value string, set bool) error {
	n, err := k.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %q not found: create it first (kubectl create namespace %s)", ns, ns)
	}
	if err != nil {
		return fmt.Errorf("get namespace %s: %w", ns, err)
	}
	if set {
		if n.Labels[key] == value {
			return nil
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[key] = value
	} else {
		if _, ok := n.Labels[key]; !ok {
			return nil
		}
		delete(n.Labels, key)
	}
	if _, err := k.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("label namespace %s: %w", ns, err)
	}
	return nil
}

func (r *root) completeNamespaces(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := r.clients()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	l, err := c.Kube.CoreV1().Namespaces().List(cmd.Context(), metav1.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, n := range l.Items {
		names = append(names, n.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
