package captureagent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"
)

// clientsetKube adapts a (fake) clientset to Kube, as the agent's tests
// drive it through client-go's fake clientset.
type clientsetKube struct{ c kubernetes.Interface }

func (k clientsetKube) ListPods(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
	return k.c.CoreV1().Pods("").List(ctx, o)
}

func (k clientsetKube) WatchPods(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return k.c.CoreV1().Pods("").Watch(ctx, o)
}

func (k clientsetKube) ListNamespaces(ctx context.Context, o metav1.ListOptions) (*corev1.NamespaceList, error) {
	return k.c.CoreV1().Namespaces().List(ctx, o)
}

func (k clientsetKube) WatchNamespaces(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return k.c.CoreV1().Namespaces().Watch(ctx, o)
}

// IsWatchListSemanticsUnSupported passes on the fake clientset's answer
// (true: its watches do not stream the initial list), so the reflector lists
// and then watches, as the informer factory does over a fake clientset.
func (k clientsetKube) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(k.c)
}
