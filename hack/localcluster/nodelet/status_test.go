package nodelet

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestBuildPodStatus(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	mkPod := func(policy corev1.RestartPolicy, inits ...string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", CreationTimestamp: metav1.NewTime(t0)},
			Spec:       corev1.PodSpec{RestartPolicy: policy, Containers: []corev1.Container{{Name: "app", Image: "img"}}},
		}
		for _, n := range inits {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "img"})
		}
		return p
	}
	running := ContainerState{Name: "app", StartedAt: t0, Started: true, Ready: true}
	exited := func(code int32) *Terminated {
		return &Terminated{ExitCode: code, Reason: "Error", StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	}
	base := PodState{PodIPs: []string{"10.0.0.5"}, HostIPs: []string{"172.18.0.2"}, StartTime: t0, SandboxReady: true}
	with := func(init []ContainerState, ctrs ...ContainerState) PodState {
		s := base
		s.Init, s.Containers = init, ctrs
		return s
	}
	type conds struct{ initialized, ready corev1.ConditionStatus }
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		st        PodState
		phase     corev1.PodPhase
		conds     conds
		wantState string // waiting reason, "running" or "terminated"
		restarts  int32
	}{
		{"creating", mkPod(corev1.RestartPolicyAlways), PodState{}, corev1.PodPending, conds{"True", "False"}, "ContainerCreating", 0},
		{"running ready", mkPod(corev1.RestartPolicyAlways), with(nil, running), corev1.PodRunning, conds{"True", "True"}, "running", 0},
		{"running not ready", mkPod(corev1.RestartPolicyAlways), with(nil, ContainerState{StartedAt: t0}), corev1.PodRunning, conds{"True", "False"}, "running", 0},
		{"unknown image", mkPod(corev1.RestartPolicyAlways), with(nil, ContainerState{Waiting: &Waiting{Reason: "ErrImagePull"}}), corev1.PodPending, conds{"True", "False"}, "ErrImagePull", 0},
		{"crash loop", mkPod(corev1.RestartPolicyAlways), with(nil, ContainerState{Waiting: &Waiting{Reason: "CrashLoopBackOff"}, LastTerminated: exited(3), RestartCount: 2}), corev1.PodRunning, conds{"True", "False"}, "CrashLoopBackOff", 2},
		{"never, succeeded", mkPod(corev1.RestartPolicyNever), with(nil, ContainerState{Terminated: exited(0)}), corev1.PodSucceeded, conds{"True", "False"}, "terminated", 0},
		{"never, failed", mkPod(corev1.RestartPolicyNever), with(nil, ContainerState{Terminated: exited(1)}), corev1.PodFailed, conds{"True", "False"}, "terminated", 0},
		{"on failure, succeeded", mkPod(corev1.RestartPolicyOnFailure), with(nil, ContainerState{Terminated: exited(0)}), corev1.PodSucceeded, conds{"True", "False"}, "terminated", 0},
		{"on failure, restarting", mkPod(corev1.RestartPolicyOnFailure), with(nil, ContainerState{Waiting: &Waiting{Reason: "CrashLoopBackOff"}, LastTerminated: exited(2), RestartCount: 1}), corev1.PodRunning, conds{"True", "False"}, "CrashLoopBackOff", 1},
		{"init running", mkPod(corev1.RestartPolicyAlways, "init"), with([]ContainerState{{StartedAt: t0}}), corev1.PodPending, conds{"False", "False"}, "ContainerCreating", 0},
		{"init done", mkPod(corev1.RestartPolicyAlways, "init"), with([]ContainerState{{Terminated: exited(0)}}, running), corev1.PodRunning, conds{"True", "True"}, "running", 0},
		{"init failed, never", mkPod(corev1.RestartPolicyNever, "init"), with([]ContainerState{{Terminated: exited(1)}}), corev1.PodFailed, conds{"False", "False"}, "ContainerCreating", 0},
		{"init failed, always: retry", mkPod(corev1.RestartPolicyAlways, "init"), with([]ContainerState{{Waiting: &Waiting{Reason: "CrashLoopBackOff"}, LastTerminated: exited(1)}}), corev1.PodPending, conds{"False", "False"}, "ContainerCreating", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := BuildPodStatus(tc.pod, tc.st, now)
			if st.Phase != tc.phase {
				t.Errorf("phase %s, want %s", st.Phase, tc.phase)
			}
			if c := findCond(st.Conditions, corev1.PodInitialized); c == nil || c.Status != tc.conds.initialized {
				t.Errorf("Initialized %v, want %s", c, tc.conds.initialized)
			}
			for _, typ := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
				if c := findCond(st.Conditions, typ); c == nil || c.Status != tc.conds.ready {
					t.Errorf("%s %v, want %s", typ, c, tc.conds.ready)
				}
			}
			if c := findCond(st.Conditions, corev1.PodScheduled); c == nil || c.Status != corev1.ConditionTrue {
				t.Errorf("PodScheduled %v", c)
			}
			if len(st.ContainerStatuses) != 1 {
				t.Fatalf("container statuses %v", st.ContainerStatuses)
			}
			cs := st.ContainerStatuses[0]
			var state string
			switch {
			case cs.State.Running != nil:
				state = "running"
			case cs.State.Terminated != nil:
				state = "terminated"
			case cs.State.Waiting != nil:
				state = cs.State.Waiting.Reason
			}
			if state != tc.wantState || cs.RestartCount != tc.restarts || cs.Name != "app" || cs.Image != "img" {
				t.Errorf("container status %+v; want state %s restarts %d", cs, tc.wantState, tc.restarts)
			}
			if tc.wantState == "CrashLoopBackOff" && (cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode == 0) {
				t.Errorf("lastState %+v", cs.LastTerminationState)
			}
			if tc.st.SandboxReady && (st.PodIP != "10.0.0.5" || st.HostIP != "172.18.0.2" || len(st.PodIPs) != 1 || st.StartTime == nil) {
				t.Errorf("addresses/startTime: %q %q %v %v", st.PodIP, st.HostIP, st.PodIPs, st.StartTime)
			}
		})
	}
}

func TestBuildPodStatusTransitionTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: metav1.NewTime(t0)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{QOSClass: corev1.PodQOSBestEffort},
	}
	st := PodState{SandboxReady: true, Containers: []ContainerState{{StartedAt: t0, Ready: true, Started: true}}}
	s1 := BuildPodStatus(pod, st, t0.Add(10*time.Second+300*time.Millisecond))
	if s1.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("unowned field qosClass dropped")
	}
	ready := findCond(s1.Conditions, corev1.PodReady)
	if !ready.LastTransitionTime.Time.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("first transition %v (want truncated to seconds)", ready.LastTransitionTime)
	}
	pod.Status = s1
	s2 := BuildPodStatus(pod, st, t0.Add(time.Hour))
	if !findCond(s2.Conditions, corev1.PodReady).LastTransitionTime.Equal(&ready.LastTransitionTime) {
		t.Errorf("unchanged condition got a new transition time")
	}
	st.Containers[0].Ready = false
	s3 := BuildPodStatus(pod, st, t0.Add(time.Hour))
	if r := findCond(s3.Conditions, corev1.PodReady); r.Status != corev1.ConditionFalse || !r.LastTransitionTime.Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("readiness loss: %+v", r)
	}

	// Readiness gates hold Ready back until their condition is True.
	pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/gate"}}
	st.Containers[0].Ready = true
	if r := findCond(BuildPodStatus(pod, st, t0).Conditions, corev1.PodReady); r.Status != corev1.ConditionFalse {
		t.Errorf("Ready with an unmet readiness gate")
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: "example.com/gate", Status: corev1.ConditionTrue})
	s4 := BuildPodStatus(pod, st, t0)
	if r := findCond(s4.Conditions, corev1.PodReady); r.Status != corev1.ConditionTrue {
		t.Errorf("Ready with a met readiness gate: %+v", r)
	}
	if findCond(s4.Conditions, "example.com/gate") == nil {
		t.Errorf("foreign condition dropped")
	}
}

func TestBuildPodStatusSidecar(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{{Name: "side", RestartPolicy: &always}},
		Containers:     []corev1.Container{{Name: "app"}},
	}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	run := ContainerState{StartedAt: t0, Started: true, Ready: true}
	for _, tc := range []struct {
		name        string
		side, app   ContainerState
		phase       corev1.PodPhase
		initialized bool
		ready       bool
	}{
		{"sidecar starting", ContainerState{StartedAt: t0}, ContainerState{}, corev1.PodPending, false, false},
		{"sidecar started, app running", run, run, corev1.PodRunning, true, true},
		{"sidecar not ready", ContainerState{StartedAt: t0, Started: true}, run, corev1.PodRunning, true, false},
		{"app done, sidecar still up", run, ContainerState{Terminated: &Terminated{}}, corev1.PodSucceeded, true, false},
		{"app done, sidecar stopped", ContainerState{Terminated: &Terminated{ExitCode: 143}}, ContainerState{Terminated: &Terminated{}}, corev1.PodSucceeded, true, false},
	} {
		st := BuildPodStatus(pod, PodState{Init: []ContainerState{tc.side}, Containers: []ContainerState{tc.app}}, t0)
		init := findCond(st.Conditions, corev1.PodInitialized).Status == corev1.ConditionTrue
		ready := findCond(st.Conditions, corev1.PodReady).Status == corev1.ConditionTrue
		if st.Phase != tc.phase || init != tc.initialized || ready != tc.ready {
			t.Errorf("%s: phase %s initialized %v ready %v; want %s %v %v", tc.name, st.Phase, init, ready, tc.phase, tc.initialized, tc.ready)
		}
	}
}
