package waypointctl

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serverDefaulted adds what the API server would add to a created
// Deployment: fields we do not own must not cause updates.
func TestMergeDeploymentIgnoresServerDefaults(t *testing.T) {
	gw := waypoint("wp")
	_, want, _ := Desired(gw, testConfig)
	live := want.DeepCopy()
	live.ResourceVersion = "42"
	live.Labels["added-by-user"] = "x"
	live.Spec.RevisionHistoryLimit = new(int32(10))
	ps := &live.Spec.Template.Spec
	ps.DNSPolicy = corev1.DNSClusterFirst
	ps.RestartPolicy = corev1.RestartPolicyAlways
	ps.DeprecatedServiceAccount = "wp"
	ps.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	ps.Containers[0].TerminationMessagePath = "/dev/termination-log"
	ps.Containers = append(ps.Containers, corev1.Container{Name: "debug", Image: "busybox"})
	live.Status.ReadyReplicas = 1

	if _, changed := MergeDeployment(live, want); changed {
		t.Error("server defaults and foreign fields cause an update")
	}

	drift := live.DeepCopy()
	drift.Spec.Template.Spec.Containers[0].Image = "ambient/waypoint:old"
	drift.Spec.Replicas = new(int32(5))
	got, changed := MergeDeployment(drift, want)
	if !changed {
		t.Fatal("image and replicas drift not corrected")
	}
	gps := got.Spec.Template.Spec
	if gps.Containers[0].Image != "ambient/waypoint:test" || *got.Spec.Replicas != 1 {
		t.Errorf("merged image %q replicas %d", gps.Containers[0].Image, *got.Spec.Replicas)
	}
	if gps.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent || len(gps.Containers) != 2 || got.Labels["added-by-user"] != "x" || got.ResourceVersion != "42" {
		t.Error("merge dropped fields it does not own")
	}
	if drift.Spec.Template.Spec.Containers[0].Image != "ambient/waypoint:old" {
		t.Error("merge mutated the live object (a cache object)")
	}
}

func TestMergeService(t *testing.T) {
	_, _, want := Desired(waypoint("wp"), testConfig)
	live := want.DeepCopy()
	live.Spec.ClusterIP = "10.96.0.7"
	live.Spec.ClusterIPs = []string{"10.96.0.7"}
	live.Spec.SessionAffinity = corev1.ServiceAffinityNone
	if _, changed := MergeService(live, want); changed {
		t.Error("allocated clusterIP causes an update")
	}

	_, _, wantWorkload := Desired(waypoint("wp", withLabel(LabelWaypointFor, "workload")), testConfig)
	got, changed := MergeService(live, wantWorkload)
	if !changed || got.Labels[LabelWaypointFor] != "workload" {
		t.Errorf("waypoint-for change: changed=%v label=%q", changed, got.Labels[LabelWaypointFor])
	}
	if got.Spec.ClusterIP != "10.96.0.7" {
		t.Errorf("merge dropped the clusterIP")
	}
}

func TestMergeServiceAccountAddsOwner(t *testing.T) {
	gw := waypoint("wp")
	want, _, _ := Desired(gw, testConfig)
	live := want.DeepCopy()
	live.OwnerReferences = nil
	live.Labels = nil
	got, changed := MergeServiceAccount(live, want)
	if !changed || !ControlledBy(got, gw) || got.Labels[LabelManaged] != ManagedValue {
		t.Errorf("changed=%v owner=%v labels=%v", changed, got.OwnerReferences, got.Labels)
	}
	if _, changed := MergeServiceAccount(got, want); changed {
		t.Error("second merge changes again")
	}
}

func TestControlledBy(t *testing.T) {
	gw := waypoint("wp")
	other := waypoint("wp")
	other.UID = "recreated"
	sa, _, _ := Desired(gw, testConfig)
	if !ControlledBy(sa, gw) {
		t.Error("own child not recognised")
	}
	if ControlledBy(sa, other) {
		t.Error("child of an earlier Gateway with the same name taken as ours")
	}
	sa.OwnerReferences[0].Controller = nil
	if ControlledBy(sa, gw) {
		t.Error("non-controller owner reference taken as control")
	}
	if ControlledBy(&metav1.ObjectMeta{}, gw) {
		t.Error("unowned object taken as ours")
	}
}
