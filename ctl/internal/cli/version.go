package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/install"
	"github.com/ambient-mesh/ambient/ctl/internal/printer"
	"github.com/ambient-mesh/ambient/pkg/version"
)

// Versions is what `ambientctl version` reports.
type Versions struct {
	Client       string `json:"client"`
	ControlPlane string `json:"controlPlane,omitempty"`
	DataPlane    string `json:"dataPlane,omitempty"`
}

// imageTag returns the tag of an image reference ("" when it has none).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return ""
	}
	return image[i+1:]
}

func (r *root) versionCmd() *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client and mesh versions",
		Long: `Print ambientctl's version and, from the cluster, the image tags of the istiod-lite
Deployment (control plane) and the ztunnel DaemonSet (data plane).`,
		Example: `  ambientctl version
  ambientctl version --client
  ambientctl version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := Versions{Client: version.String()}
			if !clientOnly {
				c, err := r.clients()
				if err != nil {
					return err
				}
				v.ControlPlane, v.DataPlane = "not installed", "not installed"
				d, err := c.Kube.AppsV1().Deployments(install.Namespace).Get(cmd.Context(), "istiod-lite", metav1.GetOptions{})
				switch {
				case err == nil && len(d.Spec.Template.Spec.Containers) > 0:
					v.ControlPlane = imageTag(d.Spec.Template.Spec.Containers[0].Image)
				case err != nil && !apierrors.IsNotFound(err):
					return fmt.Errorf("get Deployment istiod-lite: %w", err)
				}
				ds, err := c.Kube.AppsV1().DaemonSets(install.Namespace).Get(cmd.Context(), "ztunnel", metav1.GetOptions{})
				switch {
				case err == nil && len(ds.Spec.Template.Spec.Containers) > 0:
					v.DataPlane = imageTag(ds.Spec.Template.Spec.Containers[0].Image)
				case err != nil && !apierrors.IsNotFound(err):
					return fmt.Errorf("get DaemonSet ztunnel: %w", err)
				}
			}
			rows := printer.Rows{Header: []string{"COMPONENT", "VERSION"}, Rows: [][]string{{"client", v.Client}}}
			if !clientOnly {
				rows.Rows = append(rows.Rows, []string{"control plane (istiod-lite)", v.ControlPlane}, []string{"data plane (ztunnel)", v.DataPlane})
			}
			return r.print(rows, v)
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "only the client version; do not contact the cluster")
	return cmd
}
