package nodelet

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ContainerState is the worker's view of one container, the input of
// BuildPodStatus. Exactly one of Waiting, Running (non-zero StartedAt) or
// Terminated is meaningful: Terminated wins over Running, Running over
// Waiting; none means Waiting/ContainerCreating.
type ContainerState struct {
	Name, Image, ImageID, ContainerID string
	Waiting                           *Waiting
	StartedAt                         time.Time // running since, if Terminated is nil
	Terminated                        *Terminated
	LastTerminated                    *Terminated
	RestartCount                      int32
	Ready, Started                    bool
}

// Waiting is a waiting container's reason.
type Waiting struct{ Reason, Message string }

// Terminated is how a container instance ended.
type Terminated struct {
	ExitCode              int32
	Signal                int32
	Reason, Message       string
	ContainerID           string
	StartedAt, FinishedAt time.Time
}

// PodState is the worker's view of a pod, the input of BuildPodStatus.
type PodState struct {
	PodIPs, HostIPs []string
	StartTime       time.Time
	SandboxReady    bool
	Init            []ContainerState
	Containers      []ContainerState
}

func (c ContainerState) running() bool { return c.Terminated == nil && !c.StartedAt.IsZero() }

func (c ContainerState) succeeded() bool { return c.Terminated != nil && c.Terminated.ExitCode == 0 }

// BuildPodStatus computes the desired status of pod from the worker's state.
// Fields the nodelet does not own (qosClass, nominatedNodeName, ...) are
// copied from pod.Status; condition transition times are kept from
// pod.Status while a condition's value does not change. Times are truncated
// to seconds, as they are after a round trip through the API server.
func BuildPodStatus(pod *corev1.Pod, st PodState, now time.Time) corev1.PodStatus {
	out := *pod.Status.DeepCopy()
	now = now.Truncate(time.Second)
	out.Phase = podPhase(pod, st)
	out.HostIP, out.HostIPs = first(st.HostIPs), nil
	for _, ip := range st.HostIPs {
		out.HostIPs = append(out.HostIPs, corev1.HostIP{IP: ip})
	}
	if len(st.PodIPs) > 0 {
		out.PodIP, out.PodIPs = st.PodIPs[0], nil
		for _, ip := range st.PodIPs {
			out.PodIPs = append(out.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	if !st.StartTime.IsZero() {
		t := mt(st.StartTime)
		out.StartTime = &t
	}
	out.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, st.Init)
	out.ContainerStatuses = containerStatuses(pod.Spec.Containers, st.Containers)

	initialized := true
	var notInit []string
	var unready []string
	for i, c := range pod.Spec.InitContainers {
		if !initDone(c, st.Init, i) {
			initialized = false
			notInit = append(notInit, c.Name)
		}
		if IsSidecar(c) && (i >= len(st.Init) || !st.Init[i].Ready || !st.Init[i].running()) {
			unready = append(unready, c.Name)
		}
	}
	for i, c := range pod.Spec.Containers {
		if i >= len(st.Containers) || !st.Containers[i].Ready || !st.Containers[i].running() {
			unready = append(unready, c.Name)
		}
	}
	terminal := out.Phase == corev1.PodSucceeded || out.Phase == corev1.PodFailed

	conds := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: boolStatus(st.SandboxReady && !terminal)},
		{Type: corev1.PodInitialized, Status: boolStatus(initialized)},
		{Type: corev1.ContainersReady, Status: boolStatus(len(unready) == 0)},
		{Type: corev1.PodReady, Status: boolStatus(len(unready) == 0)},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	if !initialized {
		conds[1].Reason = "ContainersNotInitialized"
		conds[1].Message = fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " "))
	}
	if len(unready) > 0 {
		for _, i := range []int{2, 3} {
			conds[i].Reason = "ContainersNotReady"
			conds[i].Message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		}
	}
	if terminal {
		for _, i := range []int{2, 3} {
			conds[i].Status, conds[i].Reason, conds[i].Message = corev1.ConditionFalse, "PodCompleted", ""
		}
	}
	if conds[3].Status == corev1.ConditionTrue {
		var gates []string
		for _, g := range pod.Spec.ReadinessGates {
			if c := findCond(pod.Status.Conditions, g.ConditionType); c == nil || c.Status != corev1.ConditionTrue {
				gates = append(gates, string(g.ConditionType))
			}
		}
		if len(gates) > 0 {
			conds[3].Status, conds[3].Reason = corev1.ConditionFalse, "ReadinessGatesNotReady"
			conds[3].Message = fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", gates[0])
		}
	}
	var merged []corev1.PodCondition
	for _, c := range conds {
		prev := findCond(pod.Status.Conditions, c.Type)
		switch {
		case prev != nil && prev.Status == c.Status:
			c.LastTransitionTime = prev.LastTransitionTime
		case c.Type == corev1.PodScheduled && prev == nil:
			c.LastTransitionTime = metav1.NewTime(pod.CreationTimestamp.Time.Truncate(time.Second))
		default:
			c.LastTransitionTime = metav1.NewTime(now)
		}
		merged = append(merged, c)
	}
	// Keep conditions owned by others (readiness gates, DisruptionTarget, ...).
	for _, c := range pod.Status.Conditions {
		if findCond(merged, c.Type) == nil {
			merged = append(merged, c)
		}
	}
	out.Conditions = merged
	return out
}

// podPhase follows the kubelet's getPhase.
func podPhase(pod *corev1.Pod, st PodState) corev1.PodPhase {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return pod.Status.Phase
	}
	policy := pod.Spec.RestartPolicy
	for i, c := range pod.Spec.InitContainers {
		if !initDone(c, st.Init, i) {
			if i < len(st.Init) && st.Init[i].Terminated != nil && policy == corev1.RestartPolicyNever {
				return corev1.PodFailed
			}
			return corev1.PodPending
		}
	}
	var running, waiting, stopped, succeeded int
	for i := range pod.Spec.Containers {
		if i >= len(st.Containers) {
			waiting++
			continue
		}
		c := st.Containers[i]
		switch {
		case c.running():
			running++
		case c.Terminated != nil:
			stopped++
			if c.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.LastTerminated != nil:
			stopped++
			if c.LastTerminated.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if policy == corev1.RestartPolicyAlways || policy == "" {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

func containerStatuses(specs []corev1.Container, st []ContainerState) []corev1.ContainerStatus {
	if len(specs) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(specs))
	for i, spec := range specs {
		var c ContainerState
		if i < len(st) {
			c = st[i]
		}
		cs := corev1.ContainerStatus{
			Name:         spec.Name,
			Image:        spec.Image,
			ImageID:      c.ImageID,
			ContainerID:  c.ContainerID,
			RestartCount: c.RestartCount,
			Ready:        c.Ready && c.running(),
		}
		started := c.Started && c.running()
		cs.Started = &started
		switch {
		case c.Terminated != nil:
			cs.State.Terminated = termStatus(c.Terminated)
		case c.running():
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: mt(c.StartedAt)}
		case c.Waiting != nil:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Waiting.Reason, Message: c.Waiting.Message}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if c.LastTerminated != nil {
			cs.LastTerminationState.Terminated = termStatus(c.LastTerminated)
		}
		out[i] = cs
	}
	return out
}

func termStatus(t *Terminated) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: t.ExitCode, Signal: t.Signal, Reason: t.Reason, Message: t.Message,
		StartedAt: mt(t.StartedAt), FinishedAt: mt(t.FinishedAt), ContainerID: t.ContainerID,
	}
}

func mt(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(t.Truncate(time.Second))
}

func boolStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

func findCond(cs []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// IsSidecar reports a native sidecar: an init container with
// restartPolicy Always, which keeps running next to the main containers.
func IsSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// initDone reports whether init container i no longer holds the pod back:
// it completed successfully, or it is a sidecar that has started (or has
// been stopped because the pod finished).
func initDone(c corev1.Container, st []ContainerState, i int) bool {
	if i >= len(st) {
		return false
	}
	if IsSidecar(c) {
		return (st[i].running() && st[i].Started) || st[i].Terminated != nil
	}
	return st[i].succeeded()
}
