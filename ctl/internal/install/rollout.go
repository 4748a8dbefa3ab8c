package install

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// DeploymentReady says whether a Deployment's rollout is done, and if not why.
func DeploymentReady(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "waiting for the controller to see the new spec"
	case s.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, want)
	case s.Replicas > s.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas terminating", s.Replicas-s.UpdatedReplicas)
	case s.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas ready", s.AvailableReplicas, want)
	}
	return true, fmt.Sprintf("%d of %d replicas ready", s.AvailableReplicas, want)
}

// DaemonSetReady says whether a DaemonSet runs an up-to-date ready pod on
// every node it should, and if not why.
func DaemonSetReady(ds *appsv1.DaemonSet) (bool, string) {
	s := ds.Status
	switch {
	case s.ObservedGeneration < ds.Generation:
		return false, "waiting for the controller to see the new spec"
	case s.DesiredNumberScheduled == 0:
		return false, "no node to schedule on yet"
	case s.UpdatedNumberScheduled < s.DesiredNumberScheduled:
		return false, fmt.Sprintf("%d of %d nodes updated", s.UpdatedNumberScheduled, s.DesiredNumberScheduled)
	case s.NumberReady < s.DesiredNumberScheduled:
		return false, fmt.Sprintf("%d of %d nodes ready", s.NumberReady, s.DesiredNumberScheduled)
	}
	return true, fmt.Sprintf("%d of %d nodes ready", s.NumberReady, s.DesiredNumberScheduled)
}

// PodProblems describes the pods that are not ready, one line each, with the
// most telling reason (a container's waiting reason, or the Ready condition).
func PodProblems(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		if why := podProblem(&p); why != "" {
			node := p.Spec.NodeName
			if node == "" {
				node = "unscheduled"
			}
			out = append(out, fmt.Sprintf("pod %s (node %s): %s", p.Name, node, why))
		}
	}
	sort.Strings(out)
	return out
}

func podProblem(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + c.Message
		}
	}
	var why []string
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			why = append(why, fmt.Sprintf("container %s %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			why = append(why, fmt.Sprintf("container %s exited %d (%s)", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason))
		case !cs.Ready:
			why = append(why, fmt.Sprintf("container %s running but not ready (restarts %d)", cs.Name, cs.RestartCount))
		}
	}
	if len(why) > 0 {
		return strings.TrimSpace(strings.Join(why, "; "))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			return "not ready: " + strings.TrimSpace(c.Reason+" "+c.Message)
		}
	}
	if p.Status.Phase != corev1.PodRunning {
		return "phase " + string(p.Status.Phase)
	}
	return ""
}
