package ca

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func podNames(refs []PodRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Namespace+"/"+r.Name+"@"+r.Node+"="+r.ServiceAccount)
	}
	slices.Sort(out)
	return out
}

func TestPodsOnNodeImplementations(t *testing.T) {
	objs := testPods()
	noSA := pod("app", "nosa", "", "node-a", corev1.PodPending)
	objs = append(objs, noSA)
	client := fake.NewClientset(objs...)

	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Pods().Informer()
	if err := AddNodeIndex(inf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}

	want := map[string][]string{
		"node-a": {"app/nosa@node-a=default", "app/sleep-1@node-a=sleep", "istio-system/ztunnel-a@node-a=ztunnel"},
		"node-b": {"app/httpbin-1@node-b=httpbin"},
		"node-c": nil,
	}
	impls := map[string]PodsOnNode{
		"list":     ListPodsOnNode{Client: client},
		"informer": InformerPodsOnNode{Indexer: inf.GetIndexer()},
	}
	for name, impl := range impls {
		for node, w := range want {
			got, err := impl.PodsOnNode(context.Background(), node)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !slices.Equal(podNames(got), w) {
				t.Errorf("%s PodsOnNode(%s) = %v, want %v", name, node, podNames(got), w)
			}
		}
	}
}
