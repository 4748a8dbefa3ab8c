package app

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/kube"
)

// The CA's node authorizer shares the trimmed pod cache (App.New): the trim
// must keep what ca.InformerPodsOnNode reads.
func TestTrimmedPodKeepsWhatTheCAReads(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{ServiceAccountName: "sa", NodeName: "node1",
			Containers: []corev1.Container{{Name: "c", Image: "img", Args: []string{"x"}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "1.2.3.4"},
	}
	obj, err := kube.Transform(p)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Pod)
	if got.Namespace != "ns" || got.Name != "p" || got.Spec.ServiceAccountName != "sa" || got.Spec.NodeName != "node1" || got.Status.Phase != corev1.PodRunning {
		t.Errorf("trimmed pod lost a field the CA reads: %+v", got)
	}
	if got.Annotations != nil {
		t.Error("pod not trimmed (annotations kept): is this the right Transform?")
	}
}
