//go:build e2e && long

package soak

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m, framework.InstallMesh) }

// Knobs (environment), with the defaults.
const (
	envDuration = "AMBIENT_SOAK_DURATION" // steady phase, default 10m
	envQPS      = "AMBIENT_SOAK_QPS"      // total offered rate, default 1000
	envChurn    = "AMBIENT_SOAK_CHURN"    // pod churn period, default 5s
)

// warmup is the load (with churn) before the steady phase: pools, buffers
// and heaps reach their working size before the start snapshot.
const warmup = 30 * time.Second

// startDelay lets a client pod's traffic be captured before it sends.
const startDelay = 3 * time.Second

// replicas of the echo server; churn deletes one at a time.
const replicas = 3

func envDur(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// TestSoak: two echo clients on node1 offer AMBIENT_SOAK_QPS requests/s in
// all, half raw TCP to a Service that bypasses the waypoint (ztunnel →
// HBONE → ztunnel) and half HTTP to a Service bound to the namespace's
// waypoint, first for a warm-up, then for AMBIENT_SOAK_DURATION (the steady
// phase), while one server pod of three is deleted every
// AMBIENT_SOAK_CHURN (its Deployment replaces it). Every ztunnel and the
// waypoint are scraped (Prometheus Go and process collectors) right before
// and right after the steady phase, both times with no load in flight and
// the server whole, so that what is compared is what the proxies kept;
// see checkGrowth, checkErrors and checkAfter for what must hold.
func TestSoak(t *testing.T) {
	dur := envDur(t, envDuration, 10*time.Minute)
	churnEvery := envDur(t, envChurn, 5*time.Second)
	qps := 1000.0
	if v := os.Getenv(envQPS); v != "" {
		var err error
		if qps, err = strconv.ParseFloat(v, 64); err != nil || qps <= 0 {
			t.Fatalf("%s=%q: want a positive rate", envQPS, v)
		}
	}
	// framework.New's context lasts 10 minutes; the soak needs longer.
	// Cancelled after the framework's clean-up (which uses it).
	ctx, cancel := context.WithTimeout(context.Background(), 3*(warmup+dur)+15*time.Minute)
	t.Cleanup(cancel)
	f := framework.New(t, map[string]string{"istio.io/dataplane-mode": "ambient"})
	f.Ctx = ctx

	f.DeployEcho(framework.EchoOptions{Name: "echo", Replicas: replicas})
	f.Apply(`apiVersion: v1
kind: Service
metadata:
  name: echo-l4
  labels: {istio.io/use-waypoint: none}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 9000, targetPort: tcp}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client}
`)
	f.WaitDeploymentReady("echo-v1", 2*time.Minute)
	f.ApplyWaypoint()
	l4 := fmt.Sprintf("tcp://%s:%d", f.ServiceIP("echo-l4"), framework.EchoTCPPort)
	l7 := fmt.Sprintf("http://%s:80/", f.ServiceIP("echo"))

	// Both paths answer before the load starts.
	n := 0
	for _, target := range []string{l4, l7} {
		f.Eventually(2*time.Minute, "meshed requests to "+target, func() error {
			n++
			res := f.RunEchoClientAs(fmt.Sprintf("probe-%d", n), "node1", "client", "--start-delay", "2s", "--target", target, "--count", "10")
			if res.OK != 10 {
				return fmt.Errorf("%d/10 ok: %v", res.OK, res.ErrorSamples)
			}
			return nil
		})
	}

	// The load: two clients, each offering half the rate for d.
	n = 0
	load := func(phase string, d time.Duration) (map[string]framework.EchoSummary, int, time.Duration) {
		n++
		count := int(qps / 2 * d.Seconds())
		args := func(target string) []string {
			return []string{"--start-delay", startDelay.String(), "--target", target, "--count", strconv.Itoa(count),
				"--qps", strconv.FormatFloat(qps/2, 'f', -1, 64), "--concurrency", "128", "--timeout", "5s"}
		}
		started := time.Now()
		clients := map[string]*framework.EchoClient{
			"l4 tcp":  f.StartEchoClient(framework.ClientPod{Name: fmt.Sprintf("%s-l4-%d", phase, n), Node: "node1", ServiceAccount: "client"}, args(l4)...),
			"l7 http": f.StartEchoClient(framework.ClientPod{Name: fmt.Sprintf("%s-l7-%d", phase, n), Node: "node1", ServiceAccount: "client"}, args(l7)...),
		}
		time.Sleep(startDelay + d)
		if phase == "steady" {
			t.Logf("under load at the end of the steady phase (not compared: in-flight connections): %s", snapshot(f, proxies(f)))
		}
		res := map[string]framework.EchoSummary{}
		for name, c := range clients {
			// A client that cannot keep the offered rate sends its last
			// requests late: give it as long again.
			res[name] = c.Wait(d + 5*time.Minute)
		}
		return res, count, time.Since(started) - startDelay
	}
	// settle waits until the churn's last replacement is ready and known
	// and the load's connections are closed.
	settle := func() {
		f.WaitDeploymentReady("echo-v1", 2*time.Minute)
		time.Sleep(10 * time.Second)
	}

	// Warm-up (connections pooled, buffers and heaps grown, churn paths
	// taken once), then the start snapshot, idle.
	c := startChurn(f, churnEvery)
	load("warmup", warmup)
	c.stop()
	settle()
	targets := proxies(f)
	before := snapshot(f, targets)
	t.Logf("steady phase starts (idle, after a %s warm-up): %s", warmup, before)

	c = startChurn(f, churnEvery)
	results, count, elapsed := load("steady", dur)
	churned := c.stop()
	settle()
	after := snapshot(f, targets)
	t.Logf("steady phase ends (idle, after %s of load): %s", dur, after)
	t.Logf("%d server pods deleted (one every %s)", churned, churnEvery)
	checkGrowth(t, before, after, elapsed, lingering(churned, dur, churnEvery))
	checkErrors(t, results, count, churned, qps, dur, elapsed)
	checkAfter(f, l4, l7)
}

// churner deletes an echo pod every period until stopped.
type churner struct {
	done    chan struct{}
	wg      sync.WaitGroup
	churned int
}

func startChurn(f *framework.T, every time.Duration) *churner {
	c := &churner{done: make(chan struct{})}
	c.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-tick.C:
			}
			if churnOnce(f) {
				c.churned++
			}
		}
	})
	f.Cleanup(func() { c.stop() })
	return c
}

// stop ends the churn (idempotent) and returns how many pods it deleted.
func (c *churner) stop() int {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.wg.Wait()
	return c.churned
}

// afterCount requests per path after the soak, without churn.
const afterCount = 2000

// checkAfter: once the churn has stopped and the server is whole again,
// both paths answer afterCount requests with at most 0.1% failures (2): the
// soak left the proxies serving, and what failed during it was the churn.
func checkAfter(f *framework.T, l4, l7 string) {
	f.Helper()
	f.WaitDeploymentReady("echo-v1", 2*time.Minute)
	time.Sleep(5 * time.Second) // the last replacement's endpoint reaches every proxy
	clients := map[string]*framework.EchoClient{}
	for name, target := range map[string]string{"after-l4": l4, "after-l7": l7} {
		clients[name] = f.StartEchoClient(framework.ClientPod{Name: name, Node: "node1", ServiceAccount: "client"},
			"--start-delay", "3s", "--target", target, "--count", strconv.Itoa(afterCount), "--qps", "200", "--concurrency", "16", "--timeout", "5s")
	}
	for name, c := range clients {
		r := c.Wait(3 * time.Minute)
		failed := r.Total - r.OK
		f.Logf("%s (no churn): %d/%d ok, codes %v, latency ms p50 %.1f p99 %.1f", name, r.OK, r.Total, r.ByCode, r.LatencyMs.P50, r.LatencyMs.P99)
		if r.Total != afterCount || failed*1000 > afterCount {
			f.Errorf("%s after the soak: %d/%d ok (%d sent), want ≥ 99.9%%: %q", name, r.OK, afterCount, r.Total, r.ErrorSamples)
		}
	}
}

// churnOnce deletes the oldest ready echo pod when at least two are ready.
func churnOnce(f *framework.T) bool {
	pods, err := f.Client.CoreV1().Pods(f.Namespace).List(f.Ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil {
		f.Logf("churn: list pods: %v", err)
		return false
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(p) {
			ready = append(ready, p)
		}
	}
	if len(ready) < 2 {
		return false
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].CreationTimestamp.Before(&ready[j].CreationTimestamp) })
	if err := f.Client.CoreV1().Pods(f.Namespace).Delete(f.Ctx, ready[0].Name, metav1.DeleteOptions{}); err != nil {
		f.Logf("churn: delete %s: %v", ready[0].Name, err)
		return false
	}
	return true
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
