package captureagent

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	ztstate "github.com/ambient-mesh/ambient/ztunnel/state"
)

const localConfig = `
workloads:
- uid: u1
  name: client
  namespace: bench
  serviceAccount: client
  addresses: ["10.0.0.2"]
  node: node1
  protocol: HBONE
- uid: u2
  name: legacy
  namespace: other
  addresses: ["10.0.0.3"]
  node: node1
  protocol: NONE
- uid: u3
  name: server
  namespace: bench
  serviceAccount: server
  addresses: ["10.9.0.2"]
  node: node2
  protocol: HBONE
services:
- name: svc
  namespace: bench
  hostname: svc.bench.svc.cluster.local
  vips: ["10.96.0.10"]
  ports: {80: 8080}
`

// TestStaticFromWorkloads: a local config's workloads become pods on their
// nodes, HBONE ones enrolled, others not; services are not pods.
func TestStaticFromWorkloads(t *testing.T) {
	addrs, _, err := ztstate.ParseLocalConfig([]byte(localConfig))
	if err != nil {
		t.Fatal(err)
	}
	st := StaticFromWorkloads(addrs)
	var got []string
	for _, p := range st.Pods {
		got = append(got, p.Namespace+"/"+p.Name+"@"+p.NodeName+" "+p.IPs[0].String()+" enrolled="+boolStr(Enrolled(st.Namespaces[p.Namespace], p)))
	}
	want := []string{
		"bench/client@node1 10.0.0.2 enrolled=true",
		"bench/server@node2 10.9.0.2 enrolled=true",
		"other/legacy@node1 10.0.0.3 enrolled=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("pods = %q, want %q", got, want)
	}
	if len(st.Namespaces) != 2 {
		t.Errorf("namespaces = %v, want bench and other", st.Namespaces)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestAgentStatic: without Kubernetes the agent attaches this node's pod
// veths and the uplink, enrolls the HBONE pods, and repairs drift on resync.
func TestAgentStatic(t *testing.T) {
	addrs, _, err := ztstate.ParseLocalConfig([]byte(localConfig))
	if err != nil {
		t.Fatal(err)
	}
	st := StaticFromWorkloads(addrs)
	dp := newFakeDatapath()
	a, err := New(Options{
		Static: &st, NodeName: testNode, Datapath: dp, Uplink: fixedUplink(testUplink),
		Veths:  &fakeVeths{m: map[netip.Addr]int{podA: 10, podB: 11}},
		Resync: 20 * time.Millisecond, Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h := &harness{dp: dp}
	want := map[netip.Addr]int{podA: 10}
	h.waitState(t, "client enrolled, legacy attached only", []int{testUplink, 10, 11}, want)
	dp.Unenroll(podA)
	h.waitState(t, "resync to re-enroll the client", []int{testUplink, 10, 11}, want)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !dp.is([]int{testUplink, 10, 11}, want) {
		t.Errorf("after stop: %v, want capture left in place", dp)
	}
}
