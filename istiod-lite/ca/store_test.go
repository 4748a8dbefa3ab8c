package ca

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestLoadOrCreateCAGeneratesOnceAndReuses(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	first, src, err := LoadOrCreateCA(ctx, client, StoreOptions{TrustDomain: "example.org"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if src != SourceGenerated {
		t.Fatalf("first start source = %s, want %s", src, SourceGenerated)
	}
	sec, err := client.CoreV1().Secrets("istio-system").Get(ctx, SelfSignedSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("istio-ca-secret not stored: %v", err)
	}
	if sec.Type != SelfSignedSecretType || len(sec.Data[CACertKey]) == 0 || len(sec.Data[CAKeyKey]) == 0 {
		t.Fatalf("istio-ca-secret layout wrong: type %q keys %v", sec.Type, len(sec.Data))
	}
	if o := first.SigningCert().Subject.Organization; len(o) != 1 || o[0] != "example.org" {
		t.Fatalf("root organization = %v", o)
	}

	second, src, err := LoadOrCreateCA(ctx, client, StoreOptions{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if src != SourceSelfSigned || !second.SigningCert().Equal(first.SigningCert()) {
		t.Fatalf("second instance: source %s, same root %v; want reuse of the stored root", src, second.SigningCert().Equal(first.SigningCert()))
	}
	// A certificate from the second instance is trusted by the first.
	tc, err := second.Issue(spiffe.Identity{TrustDomain: "example.org", Namespace: "app", ServiceAccount: "sleep"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Bundle().VerifyRaw(tc.Certificate); err != nil {
		t.Fatalf("second instance's certificate not trusted by first: %v", err)
	}
}

func TestLoadOrCreateCACreateRace(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	winner, err := certs.NewSelfSignedCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	winnerSecret, err := selfSignedSecret("istio-system", winner)
	if err != nil {
		t.Fatal(err)
	}
	raced := false
	client.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		// Another replica creates the secret between our Get and Create.
		if err := client.Tracker().Add(winnerSecret); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("secrets"), SelfSignedSecretName)
	})
	got, src, err := LoadOrCreateCA(ctx, client, StoreOptions{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !raced || src != SourceSelfSigned || !got.SigningCert().Equal(winner.SigningCert()) {
		t.Fatalf("after losing the race: source %s, winner's root %v", src, got.SigningCert().Equal(winner.SigningCert()))
	}
}

func TestLoadOrCreateCAPluggedWins(t *testing.T) {
	ctx := context.Background()
	root, _ := certs.NewSelfSignedCA("cluster.local", time.Hour)
	selfSigned, _ := certs.NewSelfSignedCA("cluster.local", time.Hour)
	selfSecret, _ := selfSignedSecret("istio-system", selfSigned)
	rootKey, _ := root.SigningKeyPEM()
	plugged := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: PluggedSecretName, Namespace: "istio-system"},
		Data: map[string][]byte{
			CACertKey: root.SigningCertPEM(), CAKeyKey: rootKey,
			CertChainKey: root.SigningCertPEM(), RootCertKey: root.RootsPEM(),
		},
	}
	client := fake.NewClientset(plugged, selfSecret)
	got, src, err := LoadOrCreateCA(ctx, client, StoreOptions{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if src != SourcePlugged || !got.SigningCert().Equal(root.SigningCert()) {
		t.Fatalf("source %s; want the cacerts CA to win over istio-ca-secret", src)
	}

	// A broken cacerts is an error, not a silent fallback.
	broken := plugged.DeepCopy()
	broken.Data[CAKeyKey] = selfSecret.Data[CAKeyKey]
	if _, _, err := LoadOrCreateCA(ctx, fake.NewClientset(broken), StoreOptions{}, zap.NewNop()); err == nil {
		t.Fatal("cacerts with a mismatched key accepted")
	}
}

func TestLoadOrCreateCAAPIError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "cacerts", errors.New("rbac"))
	})
	if _, _, err := LoadOrCreateCA(context.Background(), client, StoreOptions{}, zap.NewNop()); !apierrors.IsForbidden(err) {
		t.Fatalf("err = %v, want the Forbidden error wrapped", err)
	}
}
