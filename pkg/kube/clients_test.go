package kube

import (
	"testing"

	"k8s.io/client-go/rest"
)

// TestNewClients: every clientset builds from one rest.Config. RESTConfig is
// restconfig.New, whose own tests cover kubeconfig loading and its errors.
func TestNewClients(t *testing.T) {
	c, err := NewClients(&rest.Config{Host: "https://172.30.0.1:6443", BearerToken: "abc", QPS: DefaultQPS, Burst: DefaultBurst})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kube == nil || c.Gateway == nil || c.Istio == nil {
		t.Errorf("missing client: %+v", c)
	}
}
