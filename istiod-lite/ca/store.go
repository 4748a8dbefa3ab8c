package ca

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

// Names and keys of the CA Secrets, as Istio lays them out.
const (
	// SelfSignedSecretName holds the generated self-signed root (istiod's istio-ca-secret).
	SelfSignedSecretName = "istio-ca-secret"
	// PluggedSecretName holds a user-provided signing CA (istiod's cacerts); it wins over the self-signed root.
	PluggedSecretName = "cacerts"

	CACertKey    = "ca-cert.pem"
	CAKeyKey     = "ca-key.pem"
	CertChainKey = "cert-chain.pem"
	RootCertKey  = "root-cert.pem"

	// SelfSignedSecretType is the Secret type istiod uses for istio-ca-secret.
	SelfSignedSecretType corev1.SecretType = "istio.io/ca-root"

	// DefaultRootTTL is the lifetime of a generated self-signed root (Istio: 10 years).
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
)

// StoreOptions configures LoadOrCreateCA.
type StoreOptions struct {
	// Namespace of the CA Secrets; default istio-system.
	Namespace string
	// TrustDomain of a generated root; default cluster.local.
	TrustDomain string
	// RootTTL of a generated root; default DefaultRootTTL.
	RootTTL time.Duration
}

func (o StoreOptions) withDefaults() StoreOptions {
	if o.Namespace == "" {
		o.Namespace = "istio-system"
	}
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.RootTTL <= 0 {
		o.RootTTL = DefaultRootTTL
	}
	return o
}

// Source says where the signing CA came from.
type Source string

// Sources of the signing CA.
const (
	SourcePlugged    Source = "cacerts"
	SourceSelfSigned Source = "istio-ca-secret"
	SourceGenerated  Source = "generated"
)

// LoadOrCreateCA returns the signing CA: the plugged-in CA from the cacerts
// Secret if it exists, else the self-signed root from istio-ca-secret, which
// is generated and stored on first start. When several replicas start at once
// only one creation wins; the others read the winner's root back, so every
// replica signs with the same key.
func LoadOrCreateCA(ctx context.Context, client kubernetes.Interface, o StoreOptions, log *zap.Logger) (*certs.CA, Source, error) {
	o = o.withDefaults()
	secrets := client.CoreV1().Secrets(o.Namespace)

	plugged, err := secrets.Get(ctx, PluggedSecretName, metav1.GetOptions{})
	switch {
	case err == nil:
		ca, err := caFromSecret(plugged)
		if err != nil {
			return nil, "", fmt.Errorf("secret %s/%s is invalid (fix or delete it to fall back to the self-signed root): %w", o.Namespace, PluggedSecretName, err)
		}
		log.Info("using plugged-in CA", zap.String("secret", o.Namespace+"/"+PluggedSecretName),
			zap.Time("notAfter", ca.SigningCert().NotAfter))
		return ca, SourcePlugged, nil
	case !apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("read secret %s/%s (check istiod-lite's RBAC for secrets in %s): %w", o.Namespace, PluggedSecretName, o.Namespace, err)
	}

	for attempt := 0; attempt < 3; attempt++ {
		existing, err := secrets.Get(ctx, SelfSignedSecretName, metav1.GetOptions{})
		switch {
		case err == nil:
			ca, err := caFromSecret(existing)
			if err != nil {
				return nil, "", fmt.Errorf("secret %s/%s is invalid (delete it to generate a new root; every workload certificate will change): %w", o.Namespace, SelfSignedSecretName, err)
			}
			log.Info("using self-signed root", zap.String("secret", o.Namespace+"/"+SelfSignedSecretName),
				zap.Time("notAfter", ca.SigningCert().NotAfter))
			return ca, SourceSelfSigned, nil
		case !apierrors.IsNotFound(err):
			return nil, "", fmt.Errorf("read secret %s/%s: %w", o.Namespace, SelfSignedSecretName, err)
		}

		ca, err := certs.NewSelfSignedCA(o.TrustDomain, o.RootTTL)
		if err != nil {
			return nil, "", err
		}
		sec, err := selfSignedSecret(o.Namespace, ca)
		if err != nil {
			return nil, "", err
		}
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		switch {
		case err == nil:
			log.Info("generated self-signed root", zap.String("secret", o.Namespace+"/"+SelfSignedSecretName),
				zap.String("trustDomain", o.TrustDomain), zap.Time("notAfter", ca.SigningCert().NotAfter))
			return ca, SourceGenerated, nil
		case apierrors.IsAlreadyExists(err):
			// Another replica won the race: read its root back.
			continue
		default:
			return nil, "", fmt.Errorf("create secret %s/%s (check istiod-lite's RBAC for secrets in %s): %w", o.Namespace, SelfSignedSecretName, o.Namespace, err)
		}
	}
	return nil, "", errors.New("secret " + o.Namespace + "/" + SelfSignedSecretName + " keeps being created and deleted; check for another CA writing it")
}

func caFromSecret(s *corev1.Secret) (*certs.CA, error) {
	if len(s.Data[CACertKey]) == 0 || len(s.Data[CAKeyKey]) == 0 {
		return nil, fmt.Errorf("missing %s or %s", CACertKey, CAKeyKey)
	}
	return certs.LoadCA(s.Data[CACertKey], s.Data[CAKeyKey], s.Data[CertChainKey], s.Data[RootCertKey])
}

func selfSignedSecret(ns string, ca *certs.CA) (*corev1.Secret, error) {
	key, err := ca.SigningKeyPEM()
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SelfSignedSecretName, Namespace: ns},
		Type:       SelfSignedSecretType,
		Data: map[string][]byte{
			CACertKey:    ca.SigningCertPEM(),
			CAKeyKey:     key,
			CertChainKey: {},
			RootCertKey:  {},
		},
	}, nil
}
