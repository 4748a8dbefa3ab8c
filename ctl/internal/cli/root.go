package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Main runs ambientctl with args and returns the exit code.
func Main(args []string, out, errOut io.Writer) int {
	cmd := NewRoot(nil, out, errOut)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(errOut, "Error:", err)
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// root carries the global flags and the environment to the commands.
type root struct {
	env    *Env
	flags  *genericclioptions.ConfigFlags
	output string
}

// namespace is -n, or the kubeconfig context's namespace.
func (r *root) namespace() (string, error) {
	if r.flags.Namespace != nil && *r.flags.Namespace != "" {
		return *r.flags.Namespace, nil
	}
	return r.env.DefaultNamespace()
}

func (r *root) clients() (*Clients, error) { return r.env.Clients() }

func (r *root) print(rows printer.Rows, raw any) error {
	return printer.Print(r.env.Out, r.output, rows, raw)
}

// NewRoot returns the ambientctl command. env nil means the real cluster of
// the kubeconfig flags.
func NewRoot(env *Env, out, errOut io.Writer) *cobra.Command {
	r := &root{flags: genericclioptions.NewConfigFlags(true)}
	if env == nil {
		env = realEnv(r.flags, out, errOut)
	}
	r.env = env
	cmd := &cobra.Command{
		Use:   "ambientctl",
		Short: "Install and operate the ambient mesh",
		Long: `ambientctl installs the ambient mesh (istiod-lite, ztunnel), enrolls namespaces,
manages waypoints and shows what the data plane knows.`,
		Example: `  ambientctl check
  ambientctl install
  ambientctl dataplane enroll default
  ambientctl waypoint apply -n default --enroll-namespace --wait
  ambientctl ztunnel-config workloads --node node1`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return printer.ValidFormat(r.output)
		},
	}
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	r.flags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVarP(&r.output, "output", "o", printer.Table, "output format: table|json|yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(printer.Formats, cobra.ShellCompDirectiveNoFileComp))
	cmd.AddCommand(
		r.installCmd(), r.uninstallCmd(), r.dataplaneCmd(), r.waypointCmd(),
		r.ztunnelConfigCmd(), r.proxyStatusCmd(), r.checkCmd(), r.versionCmd(), r.nodeCheckCmd(),
	)
	return cmd
}
