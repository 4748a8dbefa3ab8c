package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/ztunnel/config"
)

// TestLocalCAFromFiles: --ca-cert/--ca-key make every process sign with the
// same CA (so two ztunnels trust each other); without them each process gets
// its own root.
func TestLocalCAFromFiles(t *testing.T) {
	ca, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.SigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, ca.SigningCertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	shared := config.Config{TrustDomain: "cluster.local", CA: "local", CACertFile: certFile, CAKeyFile: keyFile}
	a, err := localCA(shared)
	if err != nil {
		t.Fatal(err)
	}
	b, err := localCA(shared)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.RootsPEM()) != string(ca.RootsPEM()) || string(b.RootsPEM()) != string(ca.RootsPEM()) {
		t.Errorf("loaded CAs do not share the files' root")
	}
	own1, err := localCA(config.Config{TrustDomain: "cluster.local", CA: "local"})
	if err != nil {
		t.Fatal(err)
	}
	own2, err := localCA(config.Config{TrustDomain: "cluster.local", CA: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if string(own1.RootsPEM()) == string(own2.RootsPEM()) {
		t.Errorf("two generated local CAs share a root")
	}

	other, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.SigningKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := filepath.Join(dir, "other.key")
	if err := os.WriteFile(wrongKey, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]config.Config{
		"key of another CA": {CA: "local", CACertFile: certFile, CAKeyFile: wrongKey},
		"missing cert":      {CA: "local", CACertFile: filepath.Join(dir, "none.pem"), CAKeyFile: keyFile},
	} {
		if _, err := localCA(c); err == nil || !strings.Contains(err.Error(), "ca-") {
			t.Errorf("%s: err = %v, want an error naming the flag", name, err)
		}
	}
}
