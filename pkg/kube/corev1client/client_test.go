package corev1client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// encode serialises obj as the API server does for the given media type.
func encode(t *testing.T, mediaType string, obj runtime.Object) []byte {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
	if !ok {
		t.Fatalf("no serializer for %s", mediaType)
	}
	var b strings.Builder
	if err := codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion).Encode(obj, &b); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func newClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(&rest.Config{Host: srv.URL, UserAgent: "corev1client-test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestListPodsProtobuf: the request is the typed client's (path, field
// selector, protobuf preferred, user agent) and a protobuf answer decodes.
func TestListPodsProtobuf(t *testing.T) {
	want := &corev1.PodList{
		ListMeta: metav1.ListMeta{ResourceVersion: "42"},
		Items: []corev1.Pod{{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: map[string]string{"a": "b"}},
			Spec:       corev1.PodSpec{NodeName: "node1"},
			Status:     corev1.PodStatus{PodIP: "10.244.1.5"},
		}},
	}
	var got *http.Request
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
		_, _ = w.Write(encode(t, "application/vnd.kubernetes.protobuf", want))
	})
	l, err := c.ListPods(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=node1", ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/api/v1/pods" || got.URL.Query().Get("fieldSelector") != "spec.nodeName=node1" || got.URL.Query().Get("resourceVersion") != "0" {
		t.Errorf("request %s", got.URL)
	}
	if a := got.Header.Get("Accept"); !strings.HasPrefix(a, "application/vnd.kubernetes.protobuf") {
		t.Errorf("Accept %q, want protobuf preferred", a)
	}
	if ua := got.Header.Get("User-Agent"); ua != "corev1client-test" {
		t.Errorf("User-Agent %q", ua)
	}
	if l.ResourceVersion != "42" || len(l.Items) != 1 || l.Items[0].Name != "p" || l.Items[0].Status.PodIP != "10.244.1.5" || l.Items[0].Annotations["a"] != "b" {
		t.Errorf("list = %+v", l)
	}
}

// TestWatchNamespacesJSON: a watch request carries watch=true and the
// timeout, and a JSON event stream decodes into typed Namespaces.
func TestWatchNamespacesJSON(t *testing.T) {
	var got *http.Request
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		for _, name := range []string{"a", "b"} {
			ns := encode(t, "application/json", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"istio.io/dataplane-mode": "ambient"}}})
			if err := enc.Encode(map[string]any{"type": "ADDED", "object": json.RawMessage(ns)}); err != nil {
				t.Error(err)
			}
		}
	})
	secs := int64(30)
	w, err := c.WatchNamespaces(context.Background(), metav1.ListOptions{TimeoutSeconds: &secs, ResourceVersion: "7"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	q := got.URL.Query()
	if got.URL.Path != "/api/v1/namespaces" || q.Get("watch") != "true" || q.Get("timeoutSeconds") != "30" || q.Get("resourceVersion") != "7" {
		t.Errorf("request %s", got.URL)
	}
	var names []string
	timeout := time.After(10 * time.Second)
	for len(names) < 2 {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %v", names)
			}
			ns, isNS := ev.Object.(*corev1.Namespace)
			if ev.Type != watch.Added || !isNS {
				t.Fatalf("event %s %T", ev.Type, ev.Object)
			}
			if ns.Labels["istio.io/dataplane-mode"] != "ambient" {
				t.Errorf("labels %v", ns.Labels)
			}
			names = append(names, ns.Name)
		case <-timeout:
			t.Fatalf("no events; got %v", names)
		}
	}
	if names[0] != "a" || names[1] != "b" {
		t.Errorf("names %v", names)
	}
}

// TestErrors: an API error comes back as the server's Status, with context.
func TestErrors(t *testing.T) {
	c := newClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(encode(t, "application/json", &metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: 403, Message: "pods is forbidden"}))
	})
	_, err := c.ListPods(context.Background(), metav1.ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "list pods") || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("ListPods err = %v", err)
	}
	if _, err := c.ListNamespaces(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "list namespaces") {
		t.Errorf("ListNamespaces err = %v", err)
	}
	if _, err := c.WatchPods(context.Background(), metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "watch pods") {
		t.Errorf("WatchPods err = %v", err)
	}
}
