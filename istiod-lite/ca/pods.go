package ca

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PodRef is the part of a pod the node authorizer needs.
type PodRef struct {
	Namespace      string
	Name           string
	ServiceAccount string
	Node           string
}

// PodsOnNode lists the pods scheduled to a node. It is an interface so an
// informer-backed index and a direct List can be swapped.
type PodsOnNode interface {
	PodsOnNode(ctx context.Context, node string) ([]PodRef, error)
}

// ListPodsOnNode lists pods with a field selector on spec.nodeName for each
// call: no cache, always current, one API call per impersonated request.
type ListPodsOnNode struct {
	Client kubernetes.Interface
}

// PodsOnNode implements PodsOnNode.
func (l ListPodsOnNode) PodsOnNode(ctx context.Context, node string) ([]PodRef, error) {
	list, err := l.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list pods on node %q (check istiod-lite may list pods): %w", node, err)
	}
	out := make([]PodRef, 0, len(list.Items))
	for i := range list.Items {
		if ref, ok := podRef(&list.Items[i]); ok && ref.Node == node {
			out = append(out, ref)
		}
	}
	return out, nil
}

// NodeIndexName is the name of the index AddNodeIndex adds to a pod informer.
const NodeIndexName = "spec.nodeName"

// AddNodeIndex adds a spec.nodeName index to a pod informer (before it starts)
// so that InformerPodsOnNode can look pods up by node.
func AddNodeIndex(inf cache.SharedIndexInformer) error {
	return inf.AddIndexers(cache.Indexers{NodeIndexName: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return nil, nil
		}
		return []string{p.Spec.NodeName}, nil
	}})
}

// InformerPodsOnNode answers from a pod informer indexed by AddNodeIndex.
type InformerPodsOnNode struct {
	Indexer cache.Indexer
}

// PodsOnNode implements PodsOnNode.
func (i InformerPodsOnNode) PodsOnNode(_ context.Context, node string) ([]PodRef, error) {
	objs, err := i.Indexer.ByIndex(NodeIndexName, node)
	if err != nil {
		return nil, fmt.Errorf("pods on node %q: %w", node, err)
	}
	out := make([]PodRef, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			if ref, ok := podRef(p); ok {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

// podRef trims a pod; finished pods do not count as running on the node.
func podRef(p *corev1.Pod) (PodRef, bool) {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return PodRef{}, false
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return PodRef{Namespace: p.Namespace, Name: p.Name, ServiceAccount: sa, Node: p.Spec.NodeName}, true
}
