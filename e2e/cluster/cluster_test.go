//go:build e2e

package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// TestServiceAcrossNodes: echo servers on node1 behind a Service; a client on
// node2 reaches the ClusterIP (kube-proxy) and every replica answers; a
// deleted pod is replaced by the ReplicaSet controller.
func TestServiceAcrossNodes(t *testing.T) {
	f := framework.New(t, nil)
	f.DeployEcho(framework.EchoOptions{Name: "echo", Replicas: 2, Node: "node1"})
	f.WaitDeploymentReady("echo-v1", 90*time.Second)

	pods := f.Pods("app=echo")
	if len(pods) != 2 {
		t.Fatalf("got %d echo pods, want 2", len(pods))
	}
	for _, p := range pods {
		if p.Spec.NodeName != "node1" || p.Status.PodIP == "" || p.Status.HostIP != "172.30.0.11" {
			t.Fatalf("pod %s: node %q podIP %q hostIP %q, want node1 with an IP", p.Name, p.Spec.NodeName, p.Status.PodIP, p.Status.HostIP)
		}
	}
	f.WaitServiceReachable("echo", 80)
	svc, err := f.Client.CoreV1().Services(f.Namespace).Get(f.Ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := f.RunEchoClient("client-http", "node2", "--target", fmt.Sprintf("http://%s:80/", svc.Spec.ClusterIP), "--count", "40", "--new-conn")
	if res.OK != 40 || res.Errors != 0 {
		t.Fatalf("HTTP via ClusterIP: %d ok, %d errors of %d: %v", res.OK, res.Errors, res.Total, res.ErrorSamples)
	}
	for _, p := range pods {
		if res.ByResponder[p.Name] == 0 {
			t.Errorf("replica %s never answered; responders: %v", p.Name, res.ByResponder)
		}
	}
	if len(res.ByResponder) != 2 {
		t.Errorf("responders %v, want exactly the two replicas", res.ByResponder)
	}
	tcp := f.RunEchoClient("client-tcp", "node2", "--target", fmt.Sprintf("tcp://%s:%d", svc.Spec.ClusterIP, framework.EchoTCPPort), "--count", "10")
	if tcp.OK != 10 {
		t.Fatalf("TCP via ClusterIP: %d ok of %d: %v", tcp.OK, tcp.Total, tcp.ErrorSamples)
	}

	// Replacement: delete one pod; the ReplicaSet makes a new one that becomes ready.
	victim := pods[0].Name
	if err := f.Client.CoreV1().Pods(f.Namespace).Delete(f.Ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Eventually(90*time.Second, "replacement pod ready", func() error {
		var ready []string
		for _, p := range f.Pods("app=echo") {
			if p.Name == victim {
				return fmt.Errorf("deleted pod %s still listed", victim)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = append(ready, p.Name)
				}
			}
		}
		if len(ready) != 2 {
			return fmt.Errorf("ready pods %v, want 2 without %s", ready, victim)
		}
		return nil
	})
}

// TestBrokenInputs: an image with no local binary and a crashing container
// get the waiting reasons Kubernetes users know.
func TestBrokenInputs(t *testing.T) {
	f := framework.New(t, nil)
	mk := func(name, image string, args ...string) {
		_, err := f.Client.CoreV1().Pods(f.Namespace).Create(f.Ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image, Args: args}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
	}
	mk("no-such-image", "example.com/no/such-image:1.0")
	mk("crasher", framework.EchoImage, "no-such-subcommand")

	waiting := func(name string) (*corev1.ContainerStatus, error) {
		p, err := f.Client.CoreV1().Pods(f.Namespace).Get(f.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return nil, fmt.Errorf("no container status yet (phase %s)", p.Status.Phase)
		}
		return &p.Status.ContainerStatuses[0], nil
	}
	f.Eventually(60*time.Second, "ErrImagePull for an unknown image", func() error {
		cs, err := waiting("no-such-image")
		if err != nil {
			return err
		}
		w := cs.State.Waiting
		if w == nil || (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") {
			return fmt.Errorf("state %+v", cs.State)
		}
		if !strings.Contains(w.Message, "example.com/no/such-image:1.0") {
			return fmt.Errorf("message %q does not name the image", w.Message)
		}
		return nil
	})
	f.Eventually(90*time.Second, "CrashLoopBackOff with restarts", func() error {
		cs, err := waiting("crasher")
		if err != nil {
			return err
		}
		if cs.RestartCount < 2 || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
			return fmt.Errorf("restarts %d, state %+v", cs.RestartCount, cs.State)
		}
		if cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode == 0 {
			return fmt.Errorf("last termination %+v, want a non-zero exit", cs.LastTerminationState)
		}
		return nil
	})
}
