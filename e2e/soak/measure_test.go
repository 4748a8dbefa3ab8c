//go:build e2e && long

package soak

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/e2e/framework"
)

// target is a proxy the soak measures: its pod (UID: a restart is a
// different pod or a changed restart count) and its metrics path on 15020.
type target struct {
	name, path string
	pod        *corev1.Pod
}

// proxies are the ztunnel of every node and the namespace's waypoint.
func proxies(f *framework.T) []target {
	f.Helper()
	nodes, err := f.Client.CoreV1().Nodes().List(f.Ctx, metav1.ListOptions{})
	if err != nil {
		f.Fatalf("list nodes: %v", err)
	}
	var out []target
	for _, n := range nodes.Items {
		out = append(out, target{name: "ztunnel/" + n.Name, path: "/metrics", pod: f.ZtunnelPod(n.Name)})
	}
	return append(out, target{name: "waypoint", path: "/stats/prometheus", pod: f.WaypointPod(framework.WaypointName)})
}

// usage is one scrape of one proxy.
type usage struct {
	Goroutines, FDs, RSS, CPU float64
	// Requests: istio_requests_total (waypoint); Opened:
	// istio_tcp_connections_opened_total reported as source (ztunnel).
	Requests, Opened float64
	Restarts         int32
	UID              string
}

type snap map[string]usage

func (s snap) String() string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		u := s[n]
		fmt.Fprintf(&b, "\n  %-16s goroutines %5.0f  fds %5.0f  RSS %6.1f MiB  cpu %7.1f s", n, u.Goroutines, u.FDs, u.RSS/(1<<20), u.CPU)
	}
	return b.String()
}

// metric names of client_golang's Go and process collectors.
const (
	mGoroutines = "go_goroutines"
	mFDs        = "process_open_fds"
	mRSS        = "process_resident_memory_bytes"
	mCPU        = "process_cpu_seconds_total"
)

func snapshot(f *framework.T, targets []target) snap {
	f.Helper()
	s := snap{}
	for _, tg := range targets {
		b, err := f.ProxyGet(tg.pod, "15020", tg.path)
		if err != nil {
			f.Fatalf("scrape %s (%s): %v", tg.name, tg.pod.Name, err)
		}
		samples, err := framework.ParseMetrics(b)
		if err != nil {
			f.Fatalf("parse %s metrics: %v", tg.name, err)
		}
		u := usage{UID: string(tg.pod.UID)}
		for name, dst := range map[string]*float64{mGoroutines: &u.Goroutines, mFDs: &u.FDs, mRSS: &u.RSS, mCPU: &u.CPU} {
			found := false
			for _, smp := range samples {
				if smp.Name == name {
					*dst, found = smp.Value, true
				}
			}
			if !found {
				f.Fatalf("%s exposes no %s", tg.name, name)
			}
		}
		u.Requests = framework.SumMetric(samples, "istio_requests_total", nil)
		u.Opened = framework.SumMetric(samples, "istio_tcp_connections_opened_total", map[string]string{"reporter": "source"})
		p, err := f.Client.CoreV1().Pods(tg.pod.Namespace).Get(f.Ctx, tg.pod.Name, metav1.GetOptions{})
		if err != nil {
			f.Fatalf("get %s pod: %v", tg.name, err)
		}
		for _, cs := range p.Status.ContainerStatuses {
			u.Restarts += cs.RestartCount
		}
		s[tg.name] = u
	}
	return s
}

// Bounds on growth over the steady phase. Both snapshots are taken idle
// (no request in flight, the server whole), so the end should equal the
// start up to what the proxies keep by design:
//   - pooled HBONE connections, to deleted pods too, until the pool's idle
//     timeout (5 minutes, as Istio's ztunnel) reaps them: measured at about
//     6 goroutines and 3 descriptors per deleted pod on the client side's
//     ztunnel, half that on the server side's; allowed per pod deleted in
//     the last 5 minutes of the phase (lingerGoroutines, lingerFDs);
//   - the waypoint's keep-alive connections to its backends.
//
// Beyond that the bounds allow half as much again plus a constant: a leak
// of one goroutine or descriptor per request (hundreds of thousands over
// the phase) exceeds them, and so does a pool that never lets go of
// deleted pods in a run longer than 5 minutes. RSS gets 20 MiB on top for
// the Go heap's own growth to its steady size.
const (
	poolIdle         = 5 * time.Minute
	lingerGoroutines = 8
	lingerFDs        = 4
)

func growthOK(start, end float64, constant float64) bool {
	return end <= start*1.5+constant
}

// lingering is how many deleted pods may still have pooled connections at
// the end of a phase of length d with one deletion every churnEvery.
func lingering(churned int, d, churnEvery time.Duration) int {
	return min(churned, int(min(d, poolIdle)/churnEvery)+1)
}

func checkGrowth(t *testing.T, before, after snap, steady time.Duration, linger int) {
	t.Helper()
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("%s: no end snapshot", name)
			continue
		}
		if a.Restarts != b.Restarts {
			t.Errorf("%s restarted during the steady phase (%d → %d restarts): its figures are not comparable", name, b.Restarts, a.Restarts)
			continue
		}
		t.Logf("%-16s Δgoroutines %+5.0f (%.0f→%.0f)  Δfds %+5.0f (%.0f→%.0f)  ΔRSS %+6.1f MiB (%.1f→%.1f)  cpu used %.1f s",
			name, a.Goroutines-b.Goroutines, b.Goroutines, a.Goroutines, a.FDs-b.FDs, b.FDs, a.FDs,
			(a.RSS-b.RSS)/(1<<20), b.RSS/(1<<20), a.RSS/(1<<20), a.CPU-b.CPU)
		if d := a.Requests - b.Requests; d > 0 {
			t.Logf("%-16s steady-phase rate: %.0f HTTP requests/s", name, d/steady.Seconds())
		}
		if d := a.Opened - b.Opened; d > 0 {
			t.Logf("%-16s steady-phase rate: %.0f outbound connections/s opened", name, d/steady.Seconds())
		}
		if c := float64(20 + linger*lingerGoroutines); !growthOK(b.Goroutines, a.Goroutines, c) {
			t.Errorf("%s: goroutines grew %.0f → %.0f (bound start×1.5+%.0f, %d deleted pods' pooled connections included)", name, b.Goroutines, a.Goroutines, c, linger)
		}
		if c := float64(20 + linger*lingerFDs); !growthOK(b.FDs, a.FDs, c) {
			t.Errorf("%s: open fds grew %.0f → %.0f (bound start×1.5+%.0f, %d deleted pods' pooled connections included)", name, b.FDs, a.FDs, c, linger)
		}
		if !growthOK(b.RSS, a.RSS, 20<<20) {
			t.Errorf("%s: RSS grew %.1f → %.1f MiB (bound start×1.5+20 MiB)", name, b.RSS/(1<<20), a.RSS/(1<<20))
		}
	}
}

// maxFailWindow bounds, per path, how long a deleted server pod goes on
// failing requests; see checkErrors. Measured on the 2-core local cluster
// at ~700 req/s: 0.6–1.1 s; the bound is about three times that. A proxy
// that never drops a deleted pod fails a pod's whole share from then on,
// far beyond it.
const maxFailWindow = 3 * time.Second

// baseFailures is the share of requests allowed to fail for other reasons
// than churn (none are expected).
const baseFailures = 0.001

// checkErrors: every request the clients planned was sent and the failures
// (transport errors and non-2xx answers) are what the churn explains.
//
// The clients do not retry and the echo server stops accepting at SIGTERM
// (the local cluster has no preStop hooks), so a request that a proxy
// sends to a server pod between its deletion and the moment every proxy
// has dropped it from its endpoints (kube-controller-manager → API server
// → istiod-lite → ztunnel / waypoint) fails. Each deleted pod so costs
// about W seconds of the traffic one pod gets (rate / replicas). The test
// reports that failure window W per path and requires W ≤ maxFailWindow,
// plus baseFailures of all requests: a proxy that keeps sending to a gone
// pod exceeds it. (A proxy that drops requests whatever the churn is caught
// by checkAfter, which runs without churn.)
func checkErrors(t *testing.T, res map[string]framework.EchoSummary, want, churned int, qps float64, planned, elapsed time.Duration) {
	t.Helper()
	var sent, ok int
	names := make([]string, 0, len(res))
	for name := range res {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		r := res[name]
		sent += r.Total
		ok += r.OK
		failed := r.Total - r.OK
		t.Logf("%-8s %d/%d ok, %d failed (%.3f%%: %d transport errors, codes %v), latency ms p50 %.1f p90 %.1f p99 %.1f max %.1f, error samples %q",
			name, r.OK, r.Total, failed, 100*float64(failed)/float64(max(r.Total, 1)), r.Errors, r.ByCode,
			r.LatencyMs.P50, r.LatencyMs.P90, r.LatencyMs.P99, r.LatencyMs.Max, r.ErrorSamples)
		if r.Total != want {
			t.Errorf("%s sent %d requests, want %d", name, r.Total, want)
		}
		if r.Total == 0 {
			continue
		}
		perPod := float64(r.Total) / elapsed.Seconds() / replicas // requests/s one server pod gets
		window := time.Duration(0)
		if churned > 0 {
			window = time.Duration(float64(failed) / (float64(churned) * perPod) * float64(time.Second))
		}
		allowed := baseFailures*float64(r.Total) + float64(churned)*perPod*maxFailWindow.Seconds()
		t.Logf("%-8s failure window per deleted pod: %v (bound %v); failures allowed %.0f", name, window.Round(time.Millisecond), maxFailWindow, allowed)
		if float64(failed) > allowed {
			t.Errorf("%s: %d of %d requests failed with %d pods deleted (a %v window each), want ≤ %.0f (%v per deleted pod + %.1f%%): %q",
				name, failed, r.Total, churned, window.Round(time.Millisecond), allowed, maxFailWindow, 100*baseFailures, r.ErrorSamples)
		}
	}
	t.Logf("offered %.0f req/s for %.0f s; achieved %.0f req/s sent, %.0f req/s ok over %.0f s (client pods' start included)",
		qps, planned.Seconds(), float64(sent)/elapsed.Seconds(), float64(ok)/elapsed.Seconds(), elapsed.Seconds())
}
