package app

import (
	"crypto/x509"
	"reflect"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

func TestServingCertReissuedAfterHalfLife(t *testing.T) {
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := newServingCert(ca, "mesh", func() time.Time { return now })
	c1, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"istiod-lite.mesh.svc", "istiod-lite.mesh.svc.cluster.local", "istiod-lite"}; !reflect.DeepEqual(leaf.DNSNames, want) {
		t.Errorf("DNS names = %v, want %v", leaf.DNSNames, want)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), DNSName: "istiod-lite.mesh.svc"}); err != nil {
		t.Errorf("serving certificate does not verify against the mesh root: %v", err)
	}
	if c2, _ := s.GetCertificate(nil); c2 != c1 {
		t.Error("certificate re-issued before half its lifetime")
	}
	now = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2 + time.Second)
	if c3, _ := s.GetCertificate(nil); c3 == c1 {
		t.Error("certificate not re-issued after half its lifetime")
	}
}
