package ca

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func TestTarget(t *testing.T) {
	sleep := Caller{Namespace: "app", ServiceAccount: "sleep"}
	tests := []struct {
		name          string
		impersonated  string
		want          string
		impersonating bool
		wantErr       error
	}{
		{"none", "", "spiffe://cluster.local/ns/app/sa/sleep", false, nil},
		{"self", "spiffe://cluster.local/ns/app/sa/sleep", "spiffe://cluster.local/ns/app/sa/sleep", false, nil},
		{"other", "spiffe://cluster.local/ns/app/sa/httpbin", "spiffe://cluster.local/ns/app/sa/httpbin", true, nil},
		{"other trust domain", "spiffe://evil.org/ns/app/sa/sleep", "", false, ErrOtherTrustDomain},
		{"malformed", "ns/app/sa/sleep", "", false, ErrBadIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, imp, err := target(sleep, tt.impersonated, "cluster.local")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (id.String() != tt.want || imp != tt.impersonating) {
				t.Fatalf("target = %s, %v; want %s, %v", id, imp, tt.want, tt.impersonating)
			}
		})
	}
}

func TestCallerTrusted(t *testing.T) {
	trusted := []NamespacedName{DefaultNodeProxy}
	tests := []struct {
		caller  Caller
		wantErr bool
	}{
		{Caller{Namespace: "istio-system", ServiceAccount: "ztunnel"}, false},
		{Caller{Namespace: "app", ServiceAccount: "ztunnel"}, true},
		{Caller{Namespace: "istio-system", ServiceAccount: "istiod"}, true},
		{Caller{}, true},
	}
	for _, tt := range tests {
		if err := callerTrusted(tt.caller, trusted); (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrNotTrusted)) {
			t.Errorf("callerTrusted(%s) = %v, wantErr %v", tt.caller, err, tt.wantErr)
		}
	}
}

func TestPodOnNode(t *testing.T) {
	want := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "sleep"}
	pods := []PodRef{
		{Namespace: "app", Name: "sleep-1", ServiceAccount: "sleep", Node: "a"},
		{Namespace: "other", Name: "sleep-2", ServiceAccount: "sleep", Node: "b"},
		{Namespace: "app", Name: "httpbin", ServiceAccount: "httpbin", Node: "b"},
	}
	tests := []struct {
		name    string
		node    string
		wantErr error
	}{
		{"on node", "a", nil},
		{"same sa other namespace only", "b", ErrNotOnNode},
		{"empty node", "", ErrNoNode},
		{"unknown node", "c", ErrNotOnNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := podOnNode(want, tt.node, pods); !errors.Is(err, tt.wantErr) {
				t.Fatalf("podOnNode = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestEffectiveTTL(t *testing.T) {
	tests := []struct {
		req      int64
		def, max time.Duration
		want     time.Duration
		wantErr  bool
	}{
		{0, 24 * time.Hour, 24 * time.Hour, 24 * time.Hour, false},
		{0, time.Hour, 24 * time.Hour, time.Hour, false},
		{60, time.Hour, 24 * time.Hour, time.Minute, false},
		{86400 * 2, time.Hour, 24 * time.Hour, 24 * time.Hour, false},
		{1 << 62, time.Hour, 24 * time.Hour, 24 * time.Hour, false}, // no overflow
		{0, 48 * time.Hour, 24 * time.Hour, 24 * time.Hour, false},
		{-1, time.Hour, 24 * time.Hour, 0, true},
	}
	for _, tt := range tests {
		got, err := effectiveTTL(tt.req, tt.def, tt.max)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("effectiveTTL(%d, %v, %v) = %v, %v; want %v, err %v", tt.req, tt.def, tt.max, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCallerFromReview(t *testing.T) {
	auds := []string{"istio-ca"}
	tests := []struct {
		name    string
		st      authnv1.TokenReviewStatus
		want    Caller
		wantErr error
	}{
		{"bound token", authnv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authnv1.UserInfo{
			Username: "system:serviceaccount:istio-system:ztunnel",
			Extra:    map[string]authnv1.ExtraValue{ExtraNodeName: {"n1"}, ExtraPodName: {"p"}, ExtraPodUID: {"u"}},
		}}, Caller{Namespace: "istio-system", ServiceAccount: "ztunnel", Node: "n1", PodName: "p", PodUID: "u"}, nil},
		{"unbound token", authnv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authnv1.UserInfo{
			Username: "system:serviceaccount:app:sleep",
		}}, Caller{Namespace: "app", ServiceAccount: "sleep"}, nil},
		{"ambiguous node", authnv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authnv1.UserInfo{
			Username: "system:serviceaccount:app:sleep", Extra: map[string]authnv1.ExtraValue{ExtraNodeName: {"a", "b"}},
		}}, Caller{Namespace: "app", ServiceAccount: "sleep"}, nil},
		{"not authenticated", authnv1.TokenReviewStatus{Error: "expired"}, Caller{}, ErrTokenRejected},
		{"wrong audience", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"kube"}, User: authnv1.UserInfo{
			Username: "system:serviceaccount:app:sleep"}}, Caller{}, ErrTokenRejected},
		{"no audience", authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
			Username: "system:serviceaccount:app:sleep"}}, Caller{}, ErrTokenRejected},
		{"a user", authnv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authnv1.UserInfo{Username: "admin"}}, Caller{}, ErrNotServiceAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := callerFromReview(tt.st, auds)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("callerFromReview = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseServiceAccountUser(t *testing.T) {
	tests := []struct {
		in      string
		ns, sa  string
		wantErr bool
	}{
		{"system:serviceaccount:app:sleep", "app", "sleep", false},
		{"system:serviceaccount:app", "", "", true},
		{"system:serviceaccount::sleep", "", "", true},
		{"system:serviceaccount:app:", "", "", true},
		{"system:serviceaccount:a:b:c", "", "", true},
		{"system:node:n1", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		ns, sa, err := parseServiceAccountUser(tt.in)
		if (err != nil) != tt.wantErr || ns != tt.ns || sa != tt.sa {
			t.Errorf("parseServiceAccountUser(%q) = %q, %q, %v", tt.in, ns, sa, err)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		md      metadata.MD
		want    string
		wantErr bool
	}{
		{metadata.Pairs("authorization", "Bearer abc"), "abc", false},
		{metadata.Pairs("authorization", "bearer  abc "), "abc", false},
		{metadata.Pairs("authorization", "Basic abc", "authorization", "Bearer x"), "x", false},
		{metadata.Pairs("authorization", "Bearer "), "", true},
		{metadata.Pairs("authorization", "abc"), "", true},
		{metadata.MD{}, "", true},
		{nil, "", true},
	}
	for _, tt := range tests {
		got, err := bearerToken(tt.md)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("bearerToken(%v) = %q, %v", tt.md, got, err)
		}
	}
}
