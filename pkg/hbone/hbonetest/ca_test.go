package hbonetest

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestIssueVerifies(t *testing.T) {
	ca := MustCA(t, "cluster.local")
	other := MustCA(t, "cluster.local")
	id := ca.Identity("ns", "sa")
	tests := []struct {
		name    string
		ca      *CA
		id      spiffe.Identity
		ttl     time.Duration
		wantErr bool
	}{
		{"valid", ca, id, time.Hour, false},
		{"expired", ca, id, -time.Minute, true},
		{"other root", other, id, time.Hour, true},
		{"other trust domain", ca, spiffe.Identity{TrustDomain: "evil.org", Namespace: "ns", ServiceAccount: "sa"}, time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := tt.ca.MustIssue(t, tt.id, tt.ttl)
			got, err := ca.Bundle().Verify([]*x509.Certificate{cert.Leaf})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Verify err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.id {
				t.Fatalf("identity %v, want %v", got, tt.id)
			}
		})
	}
}

func TestCerts(t *testing.T) {
	ca := MustCA(t, "cluster.local")
	var c Certs
	id := ca.Identity("ns", "sa")
	if _, err := c.ClientCertificate(context.Background(), id); err == nil {
		t.Fatal("empty Certs returned a certificate")
	}
	want := ca.MustIssue(t, id, time.Hour)
	c.Set(id, want)
	got, err := c.ClientCertificate(context.Background(), id)
	if err != nil || got != want {
		t.Fatalf("ClientCertificate = %v, %v", got, err)
	}
}
