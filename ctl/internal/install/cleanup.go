package install

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// Node cleanup: after uninstall, each node still has capture's pinned eBPF
// programs and maps (the capture container deliberately leaves them when it
// stops, so a restart never opens a plaintext window). A short-lived pod per
// node runs `ztunnel --role=capture --uninstall` with the DaemonSet's image,
// bpffs hostPath and capabilities, and removes them.

// CleanupLabel marks the node cleanup pods.
const CleanupLabel = "app=ztunnel-cleanup"

// CleanupSpec is what a node cleanup pod takes from the ztunnel DaemonSet.
type CleanupSpec struct {
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// BPFFS is the --bpffs directory of the capture container.
	BPFFS string
	// BPFFSVolume is the hostPath volume mounted at MountPath.
	BPFFSVolume  corev1.Volume
	MountPath    string
	Security     *corev1.SecurityContext
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	Priority     string
}

// CleanupSpecFrom takes the capture container of the ztunnel DaemonSet.
func CleanupSpecFrom(ds *appsv1.DaemonSet) (CleanupSpec, error) {
	ps := ds.Spec.Template.Spec
	var c *corev1.Container
	for i := range ps.Containers {
		if ps.Containers[i].Name == "capture" {
			c = &ps.Containers[i]
		}
	}
	if c == nil {
		return CleanupSpec{}, errors.New("the ztunnel DaemonSet has no capture container")
	}
	s := CleanupSpec{
		Image: c.Image, ImagePullPolicy: c.ImagePullPolicy, BPFFS: "/sys/fs/bpf/ambient",
		NodeSelector: ps.NodeSelector, Tolerations: ps.Tolerations, Priority: ps.PriorityClassName,
	}
	if c.SecurityContext != nil {
		s.Security = c.SecurityContext.DeepCopy()
	}
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--bpffs="); ok {
			s.BPFFS = v
		}
	}
	for _, m := range c.VolumeMounts {
		for _, v := range ps.Volumes {
			if v.Name == m.Name && v.HostPath != nil && strings.HasPrefix(s.BPFFS+"/", strings.TrimSuffix(m.MountPath, "/")+"/") {
				s.BPFFSVolume, s.MountPath = *v.DeepCopy(), m.MountPath
			}
		}
	}
	if s.BPFFSVolume.HostPath == nil {
		return CleanupSpec{}, fmt.Errorf("the capture container mounts no hostPath holding --bpffs=%s", s.BPFFS)
	}
	return s, nil
}

// DaemonSetFromManifest finds the ztunnel DaemonSet in a rendered manifest.
func DaemonSetFromManifest(manifest string) (*appsv1.DaemonSet, error) {
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal([]byte(doc), &ds); err != nil {
			return nil, fmt.Errorf("parse the ztunnel DaemonSet: %w", err)
		}
		if ds.Name == "ztunnel" {
			return &ds, nil
		}
	}
	return nil, errors.New("no ztunnel DaemonSet in the manifest")
}

// CleanupNodes are the nodes the DaemonSet could have run on (its node
// selector; it tolerates every taint), sorted.
func CleanupNodes(nodes []corev1.Node, selector map[string]string) []string {
	sel := labels.SelectorFromSet(selector)
	var out []string
	for _, n := range nodes {
		if sel.Matches(labels.Set(n.Labels)) {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// CleanupPodName is the cleanup pod of node.
func CleanupPodName(node string) string {
	n := "ztunnel-cleanup-" + node
	if len(n) > 63 {
		n = n[:63]
	}
	return strings.TrimRight(n, "-.")
}

// CleanupPod is the one-shot pod removing capture from node: bound to the
// node (no scheduler), host network (routing rules and nftables live there),
// the capture container's capabilities and bpffs hostPath.
func CleanupPod(s CleanupSpec, namespace, node string) *corev1.Pod {
	sel, _ := labels.Parse(CleanupLabel)
	reqs, _ := sel.Requirements()
	lbl := map[string]string{"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none"}
	for _, r := range reqs {
		lbl[r.Key()] = r.Values().List()[0]
	}
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: CleanupPodName(node), Namespace: namespace, Labels: lbl},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &zero,
			PriorityClassName:             s.Priority,
			Tolerations:                   s.Tolerations,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name:            "cleanup",
				Image:           s.Image,
				ImagePullPolicy: s.ImagePullPolicy,
				Args:            []string{"--role=capture", "--uninstall", "--bpffs=" + s.BPFFS},
				SecurityContext: s.Security,
				VolumeMounts:    []corev1.VolumeMount{{Name: s.BPFFSVolume.Name, MountPath: s.MountPath}},
			}},
			Volumes: []corev1.Volume{s.BPFFSVolume},
		},
	}
}

// CleanupOutcome says whether a node's cleanup pod is done and how.
func CleanupOutcome(p *corev1.Pod) (done bool, failed string) {
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return true, ""
	case corev1.PodFailed:
		why := "failed"
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				why = strings.TrimSpace(fmt.Sprintf("exited %d %s %s", t.ExitCode, t.Reason, t.Message))
			}
		}
		return true, why
	}
	return false, ""
}

// cleanupNodes runs the cleanup pod on every node and waits for them; the
// pods are deleted afterwards whatever happened.
func (in *Installer) cleanupNodes(ctx context.Context, s CleanupSpec, nodes []string, timeout time.Duration) error {
	pods := in.Kube.CoreV1().Pods(in.Namespace)
	zero := int64(0)
	deleteNow := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	defer func() {
		for _, n := range nodes {
			_ = pods.Delete(context.WithoutCancel(ctx), CleanupPodName(n), deleteNow)
		}
	}()
	// Leftovers of an interrupted run go first.
	old, err := pods.List(ctx, metav1.ListOptions{LabelSelector: CleanupLabel})
	if err != nil {
		return fmt.Errorf("list old eBPF cleanup pods: %w", err)
	}
	for _, p := range old.Items {
		if err := pods.Delete(ctx, p.Name, deleteNow); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old eBPF cleanup pod %s: %w", p.Name, err)
		}
	}
	if err := in.waitNoPods(ctx, timeout, CleanupLabel, "old eBPF cleanup pods"); err != nil {
		return err
	}
	for _, n := range nodes {
		if _, err := pods.Create(ctx, CleanupPod(s, in.Namespace, n), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create the eBPF cleanup pod for node %s: %w", n, err)
		}
	}
	getOpts := metav1.GetOptions{}
	failed := map[string]string{}
	err = in.poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		left := 0
		for _, n := range nodes {
			if _, ok := failed[n]; ok {
				continue
			}
			p, err := pods.Get(ctx, CleanupPodName(n), getOpts)
			if err != nil {
				return false, "", fmt.Errorf("get the eBPF cleanup pod of node %s: %w", n, err)
			}
			done, why := CleanupOutcome(p)
			switch {
			case !done:
				left++
			case why != "":
				failed[n] = why + in.logTail(ctx, p.Name)
			default:
				failed[n] = ""
			}
		}
		return left == 0, fmt.Sprintf("eBPF cleanup: %d of %d nodes done", len(nodes)-left, len(nodes)), nil
	}, func() string {
		var lines []string
		for _, n := range nodes {
			if p, err := pods.Get(context.WithoutCancel(ctx), CleanupPodName(n), getOpts); err == nil {
				lines = append(lines, PodProblems([]corev1.Pod{*p})...)
			}
		}
		return strings.Join(append(lines, "nodes not cleaned keep pinned programs under "+s.BPFFS+": run `ambientctl uninstall` again once they are Ready"), "\n  ")
	})
	var bad []string
	for _, n := range nodes {
		if why := failed[n]; why != "" {
			bad = append(bad, fmt.Sprintf("node %s: %s", n, why))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("eBPF cleanup failed on %d nodes (they keep pinned programs under %s; fix and run `ambientctl uninstall` again):\n  %s", len(bad), s.BPFFS, strings.Join(bad, "\n  "))
	}
	return err
}

// logTail is the last lines of a failed cleanup pod's log, or "".
func (in *Installer) logTail(ctx context.Context, pod string) string {
	lines := int64(5)
	b, err := in.Kube.CoreV1().Pods(in.Namespace).GetLogs(pod, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(ctx)
	if err != nil || len(b) == 0 {
		return ""
	}
	return ": " + strings.Join(strings.Fields(strings.TrimSpace(string(b))), " ")
}
