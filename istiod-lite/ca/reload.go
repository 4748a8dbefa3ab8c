package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ambient-mesh/ambient/pkg/certs"
)

// DefaultReloadInterval is how often the cacerts Secret is re-read.
const DefaultReloadInterval = 5 * time.Second

// ReloaderOptions configures a Reloader.
type ReloaderOptions struct {
	Client kubernetes.Interface
	// Namespace of the cacerts Secret; default istio-system.
	Namespace string
	// Current is the CA in use (from LoadOrCreateCA). Required.
	Current *certs.CA
	// OnChange is called with each new CA, from the Reloader's goroutine:
	// swap the server's signing CA and publish the new roots.
	OnChange func(*certs.CA)
	// Interval between reads; default DefaultReloadInterval.
	Interval time.Duration
	Logger   *zap.Logger
}

// Reloader re-reads the cacerts Secret and switches to the CA it holds when
// its content changes, so that a plugged-in CA can be installed or rotated
// (old and new roots in root-cert.pem, new intermediate in ca-cert.pem)
// without restarting istiod-lite. An invalid Secret is logged and ignored:
// the current CA keeps signing. A deleted Secret is logged once and the
// current CA keeps signing until istiod-lite restarts (and then falls back to
// istio-ca-secret).
type Reloader struct {
	o   ReloaderOptions
	log *zap.Logger

	cur         *certs.CA
	fingerprint [sha256.Size]byte // of the last Secret content seen
	seen        bool              // fingerprint is set
	gone        bool              // the Secret was found deleted
}

// NewReloader builds a Reloader.
func NewReloader(o ReloaderOptions) (*Reloader, error) {
	if o.Client == nil || o.Current == nil || o.OnChange == nil {
		return nil, fmt.Errorf("ca reloader: need a client, the current CA and OnChange")
	}
	if o.Namespace == "" {
		o.Namespace = "istio-system"
	}
	if o.Interval <= 0 {
		o.Interval = DefaultReloadInterval
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Reloader{o: o, log: o.Logger, cur: o.Current}, nil
}

// Run re-reads the Secret every interval until ctx ends.
func (r *Reloader) Run(ctx context.Context) error {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		r.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reloadAction is what Check does with what it read.
type reloadAction int

const (
	reloadNone    reloadAction = iota
	reloadLoad                 // new content: load it
	reloadGone                 // the Secret disappeared: say so once
	reloadRetried              // the read failed: try again next time
)

// decideReload is Check's pure decision.
func decideReload(readErr error, sec *corev1.Secret, seen bool, last [sha256.Size]byte, gone bool) reloadAction {
	switch {
	case apierrors.IsNotFound(readErr):
		if gone {
			return reloadNone
		}
		return reloadGone
	case readErr != nil:
		return reloadRetried
	case seen && secretFingerprint(sec) == last:
		return reloadNone
	default:
		return reloadLoad
	}
}

// secretFingerprint hashes the four cacerts entries.
func secretFingerprint(s *corev1.Secret) [sha256.Size]byte {
	h := sha256.New()
	for _, k := range []string{CACertKey, CAKeyKey, CertChainKey, RootCertKey} {
		fmt.Fprintf(h, "%s:%d:", k, len(s.Data[k]))
		h.Write(s.Data[k])
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

// sameCA reports whether two CAs sign with the same certificate and key
// material and distribute the same roots.
func sameCA(a, b *certs.CA) bool {
	return a.SigningCert().Equal(b.SigningCert()) && bytes.Equal(a.RootsPEM(), b.RootsPEM()) &&
		len(a.Chain()) == len(b.Chain())
}

// Check reads the Secret once and switches CA if it changed. It returns
// whether the CA changed.
func (r *Reloader) Check(ctx context.Context) bool {
	name := r.o.Namespace + "/" + PluggedSecretName
	sec, err := r.o.Client.CoreV1().Secrets(r.o.Namespace).Get(ctx, PluggedSecretName, metav1.GetOptions{})
	switch decideReload(err, sec, r.seen, r.fingerprint, r.gone) {
	case reloadNone:
		return false
	case reloadRetried:
		if ctx.Err() == nil {
			r.log.Warn("cannot read the plugged-in CA secret; will retry", zap.String("secret", name), zap.Error(err))
		}
		return false
	case reloadGone:
		wasSeen := r.seen
		r.gone, r.seen = true, false
		if wasSeen {
			r.log.Warn("plugged-in CA secret absent; the current CA keeps signing (istiod-lite falls back to istio-ca-secret only when restarted)",
				zap.String("secret", name), zap.Time("signerNotAfter", r.cur.SigningCert().NotAfter))
		}
		return false
	}
	r.gone, r.seen, r.fingerprint = false, true, secretFingerprint(sec)
	next, err := caFromSecret(sec)
	if err != nil {
		r.log.Error("plugged-in CA secret is invalid; the current CA keeps signing (fix the secret)",
			zap.String("secret", name), zap.Error(err))
		return false
	}
	if sameCA(r.cur, next) {
		return false
	}
	prev := r.cur
	r.cur = next
	r.log.Info("signing CA reloaded from the plugged-in CA secret", zap.String("secret", name),
		zap.String("previousSigner", prev.SigningCert().Subject.String()),
		zap.String("signer", next.SigningCert().Subject.String()),
		zap.Time("signerNotAfter", next.SigningCert().NotAfter),
		zap.Int("roots", len(next.RootList())))
	r.o.OnChange(next)
	return true
}
