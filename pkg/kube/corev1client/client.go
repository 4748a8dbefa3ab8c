package corev1client

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// scheme knows core/v1 and the unversioned meta/v1 types (Status, list and
// watch options), as client-go's kubernetes/scheme does for every group.
var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(fmt.Sprintf("corev1client: register core/v1: %v", err))
	}
}

// Client lists and watches Pods and Namespaces. It is safe for concurrent
// use.
type Client struct {
	rc rest.Interface
}

// New builds a Client from cfg (which it copies, as client-go's
// NewForConfig does).
func New(cfg *rest.Config) (*Client, error) {
	c := *cfg
	gv := corev1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(scheme, codecs).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("core/v1 REST client: %w", err)
	}
	return &Client{rc: rc}, nil
}

// ListPods lists the Pods of all namespaces that match opts.
func (c *Client) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	l := &corev1.PodList{}
	if err := c.list(ctx, "pods", opts, l); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return l, nil
}

// WatchPods watches the Pods of all namespaces that match opts.
func (c *Client) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := c.watch(ctx, "pods", opts)
	if err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	return w, nil
}

// ListNamespaces lists the Namespaces that match opts.
func (c *Client) ListNamespaces(ctx context.Context, opts metav1.ListOptions) (*corev1.NamespaceList, error) {
	l := &corev1.NamespaceList{}
	if err := c.list(ctx, "namespaces", opts, l); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	return l, nil
}

// WatchNamespaces watches the Namespaces that match opts.
func (c *Client) WatchNamespaces(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := c.watch(ctx, "namespaces", opts)
	if err != nil {
		return nil, fmt.Errorf("watch namespaces: %w", err)
	}
	return w, nil
}

// list and watch are client-go's generated List and Watch (gentype.Client)
// for a cluster-wide request on a built-in resource.
func (c *Client) list(ctx context.Context, resource string, opts metav1.ListOptions, into runtime.Object) error {
	return c.rc.Get().
		UseProtobufAsDefault().
		Resource(resource).
		VersionedParams(&opts, parameterCodec).
		Timeout(timeout(opts)).
		Do(ctx).
		Into(into)
}

func (c *Client) watch(ctx context.Context, resource string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().
		UseProtobufAsDefault().
		Resource(resource).
		VersionedParams(&opts, parameterCodec).
		Timeout(timeout(opts)).
		Watch(ctx)
}

func timeout(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}
