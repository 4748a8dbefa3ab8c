package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/checks"
	"github.com/ambient-mesh/ambient/ctl/internal/install"
	"github.com/ambient-mesh/ambient/ctl/internal/kernel"
	"github.com/ambient-mesh/ambient/pkg/version"
)

// exitError makes Main exit with code instead of 1.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// The kernel probe runs as a short-lived pod per node in kube-system (it
// exists everywhere and is usually exempt from Pod Security admission, which
// would refuse hostNetwork and capabilities elsewhere), so a check touches
// nothing the mesh owns.
const (
	kernelProbeNamespace = "kube-system"
	kernelProbeLabel     = "ambientctl-kernel-check"
)

func defaultKernelImage() string { return "ambient/ambientctl:" + version.Version }

func (r *root) nodeCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "node-check",
		Hidden: true,
		Short:  "Probe this node's kernel for the eBPF features capture needs (run by `check` in a pod per node)",
		Long: `Probe the kernel this runs on (needs CAP_BPF and CAP_NET_ADMIN) and print a JSON report.
Exit code 0: every feature is there; 64 + a bit mask of the missing ones otherwise
(1 bpf, 2 sockmap, 4 sk_assign, 8 sk_lookup, 16 tcx).`,
		Example: `  ambientctl node-check`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			res := kernel.Probe()
			b, _ := json.Marshal(res)
			fmt.Fprintln(r.env.Out, string(b))
			_ = os.WriteFile("/dev/termination-log", b, 0o644) // read by a real kubelet; absent elsewhere
			if code := kernel.ExitCode(res.Missing); code != 0 {
				return exitError{code: code, msg: "kernel lacks " + strings.Join(res.Missing, ", ")}
			}
			return nil
		},
	}
}

// kernelProbePod runs `ambientctl node-check` on node.
func kernelProbePod(image, node string) *corev1.Pod {
	zero := int64(0)
	name := "ambient-kernel-check-" + node
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-.")
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kernelProbeNamespace, Labels: map[string]string{"app": kernelProbeLabel, "istio.io/dataplane-mode": "none"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(bool),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "check", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"node-check"},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &zero, AllowPrivilegeEscalation: new(bool),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"}},
				},
			}},
		},
	}
}

// linuxNodes are the nodes ztunnel would run on by default.
func linuxNodes(nodes []corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		if os, ok := n.Labels["kubernetes.io/os"]; !ok || os == "linux" {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// probeKernels runs the probe pod on every node, waits for them (at most
// timeout), reads each exit code and deletes the pods.
func (r *root) probeKernels(ctx context.Context, c *Clients, nodes []string, image string, timeout time.Duration) ([]checks.NodeKernel, error) {
	pods := c.Kube.CoreV1().Pods(kernelProbeNamespace)
	zero := int64(0)
	now := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	defer func() {
		for _, n := range nodes {
			_ = pods.Delete(context.WithoutCancel(ctx), kernelProbePod(image, n).Name, now)
		}
	}()
	for _, n := range nodes {
		p := kernelProbePod(image, n)
		if err := pods.Delete(ctx, p.Name, now); err == nil {
			if err := r.waitPodGone(ctx, c, p.Name, timeout); err != nil {
				return nil, err
			}
		}
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create the kernel probe pod on node %s in %s: %w", n, kernelProbeNamespace, err)
		}
	}
	out := make([]checks.NodeKernel, len(nodes))
	done := make([]bool, len(nodes))
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for i, n := range nodes {
			if done[i] {
				continue
			}
			p, err := pods.Get(ctx, kernelProbePod(image, n).Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("get the kernel probe pod of node %s: %w", n, err)
			}
			done[i], out[i] = kernelOutcome(p)
			out[i].Node = n
			if !done[i] {
				pending++
				out[i].Unknown = "did not finish in " + timeout.String()
				if probs := install.PodProblems([]corev1.Pod{*p}); len(probs) > 0 {
					out[i].Unknown = probs[0]
				}
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(r.env.Poll):
		}
	}
}

// kernelOutcome reads a finished probe pod.
func kernelOutcome(p *corev1.Pod) (bool, checks.NodeKernel) {
	var nk checks.NodeKernel
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return true, nk
	case corev1.PodFailed:
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				missing, ok := kernel.Missing(int(t.ExitCode))
				if !ok {
					nk.Unknown = fmt.Sprintf("the probe exited %d %s", t.ExitCode, t.Reason)
				}
				nk.Missing = missing
				if ok && len(missing) == 0 {
					nk.Unknown = "the probe failed"
				}
				return true, nk
			}
		}
		nk.Unknown = "the probe pod failed: " + p.Status.Reason + " " + p.Status.Message
		return true, nk
	}
	return false, nk
}

func (r *root) waitPodGone(ctx context.Context, c *Clients, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.Kube.CoreV1().Pods(kernelProbeNamespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("old kernel probe pod %s/%s is still there: delete it and retry", kernelProbeNamespace, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.env.Poll):
		}
	}
}

// kernelCheck probes every Linux node.
func (r *root) kernelCheck(ctx context.Context, c *Clients, nodes []corev1.Node, image string, timeout time.Duration) (checks.Result, error) {
	nks, err := r.probeKernels(ctx, c, linuxNodes(nodes), image, timeout)
	if err != nil {
		return checks.Result{}, err
	}
	return checks.Kernel(nks), nil
}
