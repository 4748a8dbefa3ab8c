package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/charts"
	"github.com/ambient-mesh/ambient/ctl/internal/checks"
	"github.com/ambient-mesh/ambient/ctl/internal/install"
)

func (r *root) checkCmd() *cobra.Command {
	var (
		pre, post     bool
		kernelProbe   bool
		kernelImage   string
		kernelTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the cluster can run the mesh, and that the installed mesh is healthy",
		Long: `Pre-install checks: Kubernetes 1.30 or newer, nodes present and Ready, CRDs of another
owner that the install would keep as they are, and each Linux node's kernel: a short-lived
pod per node in kube-system (image --kernel-image, hostNetwork, CAP_BPF/NET_ADMIN) probes
the eBPF features capture needs (SOCKMAP, bpf_sk_assign, sk_lookup, TCX) and is deleted.
Post-install checks (run automatically when istiod-lite is installed, or with --post):
istiod-lite ready, a ready ztunnel on every node, the root certificate ConfigMap
published. Exits 1 when a check fails.`,
		Example: `  ambientctl check
  ambientctl check --pre
  ambientctl check --pre --kernel=false      # no probe pods
  ambientctl check --kernel-image registry.example/ambient/ambientctl:v0.1.0
  ambientctl check --post -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pre && post {
				return errors.New("--pre and --post exclude each other: pass one or neither")
			}
			c, err := r.clients()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			dep, err := c.Kube.AppsV1().Deployments(install.Namespace).Get(ctx, "istiod-lite", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				dep, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("get Deployment istiod-lite: %w", err)
			}
			runPost := post || !pre && dep != nil
			var rs []checks.Result
			nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			if !post {
				v, err := c.Kube.Discovery().ServerVersion()
				if err != nil {
					return fmt.Errorf("get the server version: %w", err)
				}
				rs = append(rs, checks.KubeVersion(v), checks.Nodes(nodes.Items))
				if kernelProbe {
					k, err := r.kernelCheck(ctx, c, nodes.Items, kernelImage, kernelTimeout)
					if err != nil {
						return err
					}
					rs = append(rs, k)
				}
				// Once installed, the CRDs are (also) ours: nothing to compare.
				if dep == nil || pre {
					crd, err := r.crdCheck(ctx, c)
					if err != nil {
						return err
					}
					rs = append(rs, crd)
				}
			}
			if runPost {
				more, err := postChecks(ctx, c, dep, nodes.Items)
				if err != nil {
					return err
				}
				rs = append(rs, more...)
			}
			if err := r.print(checks.Rows(rs), rs); err != nil {
				return err
			}
			if checks.Worst(rs) == checks.Fail {
				return errors.New("some checks failed: see the messages above")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pre, "pre", false, "only the pre-install checks")
	cmd.Flags().BoolVar(&post, "post", false, "only the post-install checks")
	cmd.Flags().BoolVar(&kernelProbe, "kernel", true, "probe each node's kernel with a short-lived pod (pre-install checks)")
	cmd.Flags().StringVar(&kernelImage, "kernel-image", defaultKernelImage(), "image of the kernel probe pod (ambientctl's own image)")
	cmd.Flags().DurationVar(&kernelTimeout, "kernel-timeout", time.Minute, "how long the kernel probe pods may take")
	return cmd
}

func (r *root) crdCheck(ctx context.Context, c *Clients) (checks.Result, error) {
	shipped, err := shippedCRDs()
	if err != nil {
		return checks.Result{}, err
	}
	l, err := c.CRDs.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	if err != nil {
		return checks.Result{}, fmt.Errorf("list CRDs: %w", err)
	}
	var existing []checks.CRD
	for _, x := range l.Items {
		existing = append(existing, checks.CRD{Name: x.Name, BundleVersion: x.Annotations[bundleVersion], Channel: x.Annotations[channel]})
	}
	return checks.CRDConflicts(existing, shipped), nil
}

const (
	bundleVersion = "gateway.networking.k8s.io/bundle-version"
	channel       = "gateway.networking.k8s.io/channel"
)

// shippedCRDs reads the CRDs of the embedded base chart.
func shippedCRDs() ([]checks.CRD, error) {
	base, err := charts.Load(charts.Base)
	if err != nil {
		return nil, err
	}
	var out []checks.CRD
	for _, f := range base.CRDObjects() {
		var m metav1.PartialObjectMetadata
		if err := yaml.Unmarshal(f.File.Data, &m); err != nil {
			return nil, fmt.Errorf("parse embedded %s: %w", f.Filename, err)
		}
		out = append(out, checks.CRD{Name: m.Name, BundleVersion: m.Annotations[bundleVersion], Channel: m.Annotations[channel]})
	}
	return out, nil
}

func postChecks(ctx context.Context, c *Clients, dep *appsv1.Deployment, nodes []corev1.Node) ([]checks.Result, error) {
	zt, err := c.Kube.CoreV1().Pods(install.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ztunnelSelector})
	if err != nil {
		return nil, fmt.Errorf("list ztunnel pods: %w", err)
	}
	cm, err := c.Kube.CoreV1().ConfigMaps(install.Namespace).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get ConfigMap istio-ca-root-cert: %w", err)
	}
	return []checks.Result{checks.Istiod(dep), checks.ZtunnelPerNode(nodes, zt.Items), checks.RootCert(cm)}, nil
}
