//go:build e2e

package faults

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

// waypointPair is a namespace waypoint with two replicas and a route that
// marks the requests it forwards (x-route), so a client can tell that its
// request went through it.
const waypointPair = `apiVersion: v1
kind: ServiceAccount
metadata: {name: client}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  labels: {istio.io/waypoint-for: service}
  annotations: {ambient-mesh.io/waypoint-replicas: "2"}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: waypoint}]}
    backendRefs: [{name: echo, port: 80}]
`

// TestWaypointReplicaLoss: a client sends a steady stream of requests, each
// on a new connection, to a Service bound to a waypoint of two replicas;
// one replica is killed with SIGKILL mid-stream. Requests keep succeeding:
// the client's ztunnel retries a connection the dead replica refused (or
// its pooled connection closed under) on the other replica, which is safe
// because nothing of the client's was sent yet. Only a request in flight
// inside the dying process may fail: at most one at this rate, where
// without the retries about half of the requests in the seconds until the
// replica restarts would.
func TestWaypointReplicaLoss(t *testing.T) {
	f := framework.New(t, map[string]string{ambientLabel: "ambient", "istio.io/use-waypoint": "waypoint"})
	f.DeployEcho(framework.EchoOptions{Name: "echo", Node: "node2"})
	f.Apply(waypointPair)
	f.WaitDeploymentReady("echo-v1", 90*time.Second)
	f.WaitDeploymentReady("waypoint", 2*time.Minute)
	target := fmt.Sprintf("http://%s:80/", f.ServiceIP("echo"))

	n := 0
	f.Eventually(90*time.Second, "requests go through the waypoint", func() error {
		n++
		res := f.RunEchoClientAs(fmt.Sprintf("probe-%d", n), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "3", "--new-conn")
		if res.OK != 3 || res.SeenHeaders["X-Route"] != "waypoint" {
			return fmt.Errorf("%d/3 ok, server saw x-route %q: %v", res.OK, res.SeenHeaders["X-Route"], res.ErrorSamples)
		}
		return nil
	})

	const qps, count = 10, 400
	steady := f.StartEchoClient(framework.ClientPod{Name: "steady", Node: "node1", ServiceAccount: "client"},
		"--start-delay", "3s", "--target", target, "--count", fmt.Sprint(count), "--qps", fmt.Sprint(qps), "--new-conn", "--timeout", "5s")
	time.Sleep(15 * time.Second)

	pods := f.Pods("gateway.networking.k8s.io/gateway-name=waypoint")
	if len(pods) != 2 {
		t.Fatalf("waypoint has %d pods, want 2", len(pods))
	}
	victim := &pods[0]
	pid := f.ContainerPID(victim, "waypoint")
	if pid == 0 {
		t.Fatalf("no waypoint process of pod %s", victim.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	t.Logf("killed waypoint %s (pid %d) on %s", victim.Name, pid, victim.Spec.NodeName)

	res := steady.Wait(count/qps*time.Second + 2*time.Minute)
	t.Logf("steady client: %d/%d ok, codes %v, errors %v", res.OK, res.Total, res.ByCode, res.ErrorSamples)
	if res.Total != count || res.OK < count-1 {
		t.Errorf("requests while a waypoint replica died: %d/%d ok (%d sent), codes %v, errors %v", res.OK, count, res.Total, res.ByCode, res.ErrorSamples)
	}
}
