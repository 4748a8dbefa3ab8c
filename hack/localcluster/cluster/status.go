package cluster

import (
	"context"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/hack/localcluster/controlplane"
	"github.com/ambient-mesh/ambient/hack/localcluster/procs"
)

// Status prints the cluster's processes and nodes.
func Status(ctx context.Context, stateDir string, w io.Writer) error {
	c, err := Load(stateDir)
	if err != nil {
		return err
	}
	cp := c.ControlPlane()
	names := append(append([]string{}, controlplane.Components...), "localcluster-daemon")
	for i := 1; i <= c.Nodes; i++ {
		names = append(names, fmt.Sprintf("kube-proxy-node%d", i))
	}
	down := 0
	for _, n := range names {
		pid := procs.ReadPid(cp.RunDir(), n)
		state := "running"
		if pid == 0 || !procs.Alive(pid) {
			state, down = "NOT RUNNING", down+1
		}
		fmt.Fprintf(w, "%-26s pid %-8d %s\n", n, pid, state)
	}
	client, err := Client(stateDir)
	if err != nil {
		return err
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		fmt.Fprintf(w, "node %-8s ready=%v podCIDR=%s\n", n.Name, NodeReady(&n), n.Spec.PodCIDR)
	}
	if down > 0 {
		return fmt.Errorf("%d cluster processes are not running; see %s", down, cp.LogDir())
	}
	return nil
}
