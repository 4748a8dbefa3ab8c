//go:build e2e

package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ambient-mesh/ambient/e2e/framework"
	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
	"github.com/ambient-mesh/ambient/ztunnel/captureagent"
)

// TestZtunnelRollingRestart: a meshed client on node1 opens a new connection
// per request (10/s) to a meshed server on node2 while the ztunnel DaemonSet
// is restarted as `kubectl rollout restart` does (a pod template
// annotation). The chart's surge update starts each new ztunnel next to the
// old one, the new proxy takes the capture slots over and the old one drains:
// no request fails, no captured SYN is dropped for want of a registered
// listener on either node (the capture program's dropped_no_listener
// counter, pinned, so it spans the restart; a delete-then-create update
// drops some: the client retransmits them after 1 s), and the new ztunnel on
// node2 reports the client's identity, so the connections after the restart
// still went through the mesh.
func TestZtunnelRollingRestart(t *testing.T) {
	f := framework.New(t, map[string]string{ambientLabel: "ambient"})
	f.DeployEcho(framework.EchoOptions{Name: "echo", Node: "node2"})
	f.Apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: client}\n")
	f.WaitDeploymentReady("echo-v1", 90*time.Second)
	target := fmt.Sprintf("http://%s:80/", f.ServiceIP("echo"))
	principal := fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/client", f.Namespace)

	n := 0
	f.Eventually(90*time.Second, "meshed requests reach the server", func() error {
		n++
		res := f.RunEchoClientAs(fmt.Sprintf("probe-%d", n), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "3", "--new-conn")
		if res.OK != 3 {
			return fmt.Errorf("%d/3 ok: %v", res.OK, res.ErrorSamples)
		}
		return nil
	})

	old := map[types.UID]bool{}
	for _, node := range []string{"node1", "node2"} {
		old[f.ZtunnelPod(node).UID] = true
	}

	nodes := []string{"node1", "node2"}
	drops0 := map[string]float64{}
	for _, node := range nodes {
		drops0[node] = noListenerDrops(f, node)
	}

	const qps, count = 10, 1200
	steady := f.StartEchoClient(framework.ClientPod{Name: "steady", Node: "node1", ServiceAccount: "client"},
		"--start-delay", "3s", "--target", target, "--count", fmt.Sprint(count), "--qps", fmt.Sprint(qps), "--new-conn", "--timeout", "5s")
	time.Sleep(10 * time.Second)

	t0 := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, t0.UTC().Format(time.RFC3339))
	if _, err := f.Client.AppsV1().DaemonSets(framework.SystemNamespace).Patch(f.Ctx, "ztunnel", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("restart the ztunnel DaemonSet: %v", err)
	}
	f.Eventually(3*time.Minute, "the ztunnel rollout completes", func() error {
		return rolledOut(f, old)
	})
	rollout := time.Since(t0)
	t.Logf("ztunnel rollout restart completed in %s", rollout.Round(100*time.Millisecond))
	if left := count/qps*time.Second - 13*time.Second - rollout; left < 10*time.Second {
		t.Fatalf("the rollout (%s) outlasted the client's request loop: raise count", rollout)
	}

	for _, node := range nodes {
		var drops float64
		f.Eventually(time.Minute, "the new capture agent on "+node+" serves its metrics", func() error {
			d, err := readNoListenerDrops(f, node)
			drops = d
			return err
		})
		if drops < drops0[node] {
			t.Errorf("%s: dropped_no_listener went from %v to %v: the pinned counters were reset", node, drops0[node], drops)
		} else if drops != drops0[node] {
			t.Errorf("%s: %v captured SYNs dropped with no listener registered during the rolling restart, want 0", node, drops-drops0[node])
		}
	}

	res := steady.Wait(count/qps*time.Second + 2*time.Minute)
	t.Logf("steady client: %d/%d ok, %d errors, codes %v, latency %+v", res.OK, res.Total, res.Errors, res.ByCode, res.LatencyMs)
	if res.Total != count || res.OK != count {
		t.Errorf("requests during the ztunnel rolling restart: %d/%d ok (%d sent), errors %v", res.OK, count, res.Total, res.ErrorSamples)
	}

	// The new ztunnel on node2 started during the loop: what it counts, it
	// counted after the restart.
	f.Eventually(30*time.Second, "the new destination ztunnel reports the client's identity", func() error {
		samples, err := f.ZtunnelMetrics("node2")
		if err != nil {
			return err
		}
		opened := framework.SumMetric(samples, "istio_tcp_connections_opened_total", map[string]string{"reporter": "destination", "source_principal": principal})
		if opened < 10 {
			return fmt.Errorf("istio_tcp_connections_opened_total{reporter=destination,source_principal=%s} = %v, want >= 10", principal, opened)
		}
		t.Logf("new destination ztunnel: %v connections from %s", opened, principal)
		return nil
	})
}

// rolledOut reports nil once the ztunnel DaemonSet has one updated, Ready
// pod on every node and none of the old pods is left.
func rolledOut(f *framework.T, old map[types.UID]bool) error {
	ds, err := f.Client.AppsV1().DaemonSets(framework.SystemNamespace).Get(f.Ctx, "ztunnel", metav1.GetOptions{})
	if err != nil {
		return err
	}
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberAvailable != st.DesiredNumberScheduled {
		return fmt.Errorf("generation %d observed %d, %d desired, %d updated, %d available", ds.Generation, st.ObservedGeneration, st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberAvailable)
	}
	pods, err := f.Client.CoreV1().Pods(framework.SystemNamespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "app=ztunnel"})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if old[p.UID] {
			return fmt.Errorf("old pod %s (phase %s) still exists", p.Name, p.Status.Phase)
		}
		if !podReady(&p) {
			return fmt.Errorf("pod %s is not Ready", p.Name)
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// noListenerDrops is readNoListenerDrops, failing the test on error.
func noListenerDrops(f *framework.T, node string) float64 {
	f.Helper()
	if f.StateDir == "" {
		f.Skip("reading the capture agent's counters needs the local cluster")
	}
	v, err := readNoListenerDrops(f, node)
	if err != nil {
		f.Fatal(err)
	}
	return v
}

// readNoListenerDrops reads the capture program's count of SYNs it dropped
// because no ztunnel listener was registered, from the capture agent's
// metrics, which listen on 127.0.0.1:15022 of the node's network namespace.
func readNoListenerDrops(f *framework.T, node string) (float64, error) {
	path := "/run/netns/" + netsetup.Prefix + "-" + node
	c := http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return framework.DialFromNetns(ctx, path, addr)
			},
		},
	}
	resp, err := c.Get("http://127.0.0.1:15022/metrics")
	if err != nil {
		return 0, fmt.Errorf("capture metrics of %s: %w", node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("capture metrics of %s: status %d, %v", node, resp.StatusCode, err)
	}
	samples, err := framework.ParseMetrics(b)
	if err != nil {
		return 0, fmt.Errorf("capture metrics of %s: %w", node, err)
	}
	found := false
	for _, s := range samples {
		if s.Name == captureagent.MetricPackets && s.Labels["result"] == "dropped_no_listener" {
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("capture metrics of %s lack %s{result=dropped_no_listener}", node, captureagent.MetricPackets)
	}
	return framework.SumMetric(samples, captureagent.MetricPackets, map[string]string{"result": "dropped_no_listener"}), nil
}
