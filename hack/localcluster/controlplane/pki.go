package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI holds the paths of the cluster's keys and certificates.
type PKI struct {
	Dir        string
	CACert     string // cluster CA (signs the API server's serving cert; pods trust it as ca.crt)
	CAKey      string
	ServerCert string
	ServerKey  string
	SAKey      string // service-account token signing key
	SAPub      string
	Tokens     string // static token file for the admin user
}

// NewPKI returns the layout under dir without creating anything.
func NewPKI(dir string) PKI {
	return PKI{
		Dir:        dir,
		CACert:     filepath.Join(dir, "ca.crt"),
		CAKey:      filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "apiserver.crt"),
		ServerKey:  filepath.Join(dir, "apiserver.key"),
		SAKey:      filepath.Join(dir, "sa.key"),
		SAPub:      filepath.Join(dir, "sa.pub"),
		Tokens:     filepath.Join(dir, "tokens.csv"),
	}
}

// Ensure creates any missing key material. The serving certificate covers
// the given IPs and the in-cluster names of the API server.
func (p PKI) Ensure(ips []net.IP, adminToken string) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("create PKI dir: %w", err)
	}
	if _, err := os.Stat(p.ServerCert); err == nil {
		return nil
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ambient-localcluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: append([]net.IP{net.ParseIP("127.0.0.1")}, ips...),
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create serving cert: %w", err)
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	files := []struct {
		path, typ string
		der       []byte
	}{
		{p.CACert, "CERTIFICATE", caDER},
		{p.ServerCert, "CERTIFICATE", srvDER},
		{p.SAKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)},
		{p.SAPub, "PUBLIC KEY", saPub},
	}
	for _, k := range []struct {
		path string
		key  *ecdsa.PrivateKey
	}{{p.CAKey, caKey}, {p.ServerKey, srvKey}} {
		der, err := x509.MarshalECPrivateKey(k.key)
		if err != nil {
			return err
		}
		files = append(files, struct {
			path, typ string
			der       []byte
		}{k.path, "EC PRIVATE KEY", der})
	}
	var errs []error
	for _, f := range files {
		errs = append(errs, os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600))
	}
	errs = append(errs, os.WriteFile(p.Tokens, []byte(adminToken+`,admin,admin-uid,"system:masters"`+"\n"), 0o600))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write PKI: %w", err)
	}
	return nil
}
