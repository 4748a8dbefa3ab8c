package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultAudience is the audience of the tokens callers present (Istio's "istio-ca").
const DefaultAudience = "istio-ca"

// Token "extra" keys set by the API server on tokens bound to a pod.
const (
	ExtraNodeName = "authentication.kubernetes.io/node-name"
	ExtraPodName  = "authentication.kubernetes.io/pod-name"
	ExtraPodUID   = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountUserPrefix = "system:serviceaccount:"

// Errors of authentication; all map to codes.Unauthenticated.
var (
	ErrNoToken           = errors.New("no bearer token in the authorization metadata (send a projected ServiceAccount token with audience istio-ca as 'authorization: Bearer <token>')")
	ErrTokenRejected     = errors.New("token rejected by the API server (expired, revoked or wrong audience; use a fresh projected token with audience istio-ca)")
	ErrNotServiceAccount = errors.New("token does not belong to a ServiceAccount")
)

// Caller is an authenticated caller of the CA.
type Caller struct {
	Namespace      string
	ServiceAccount string
	// Node, PodName and PodUID are set for tokens bound to a pod.
	Node    string
	PodName string
	PodUID  string
}

func (c Caller) String() string {
	if c.Namespace == "" && c.ServiceAccount == "" {
		return "unauthenticated"
	}
	return c.Namespace + "/" + c.ServiceAccount
}

// Authenticator turns a bearer token into a Caller.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Caller, error)
}

// TokenReviewAuthenticator authenticates tokens with the Kubernetes TokenReview API.
type TokenReviewAuthenticator struct {
	Client    kubernetes.Interface
	Audiences []string // default [istio-ca]
}

// Authenticate implements Authenticator.
func (a TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (Caller, error) {
	auds := a.Audiences
	if len(auds) == 0 {
		auds = []string{DefaultAudience}
	}
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: auds},
	}, metav1.CreateOptions{})
	if err != nil {
		return Caller{}, fmt.Errorf("token review (check istiod-lite may create tokenreviews): %w", err)
	}
	return callerFromReview(tr.Status, auds)
}

// callerFromReview decides whether a TokenReview status authenticates a
// ServiceAccount for one of the wanted audiences.
func callerFromReview(st authnv1.TokenReviewStatus, audiences []string) (Caller, error) {
	if !st.Authenticated {
		if st.Error != "" {
			return Caller{}, fmt.Errorf("%w: %s", ErrTokenRejected, st.Error)
		}
		return Caller{}, ErrTokenRejected
	}
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(audiences, a) }) {
		return Caller{}, fmt.Errorf("%w: audiences %v, want one of %v", ErrTokenRejected, st.Audiences, audiences)
	}
	ns, sa, err := parseServiceAccountUser(st.User.Username)
	if err != nil {
		return Caller{}, err
	}
	one := func(k string) string {
		if v := st.User.Extra[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	return Caller{Namespace: ns, ServiceAccount: sa, Node: one(ExtraNodeName), PodName: one(ExtraPodName), PodUID: one(ExtraPodUID)}, nil
}

// parseServiceAccountUser splits system:serviceaccount:<ns>:<sa>.
func parseServiceAccountUser(user string) (ns, sa string, err error) {
	rest, ok := strings.CutPrefix(user, serviceAccountUserPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: user %q", ErrNotServiceAccount, user)
	}
	ns, sa, ok = strings.Cut(rest, ":")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return "", "", fmt.Errorf("%w: user %q", ErrNotServiceAccount, user)
	}
	return ns, sa, nil
}

// bearerToken extracts the token of "authorization: Bearer <token>" from
// incoming gRPC metadata.
func bearerToken(md metadata.MD) (string, error) {
	for _, v := range md.Get("authorization") {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			if tok = strings.TrimSpace(tok); tok != "" {
				return tok, nil
			}
		}
	}
	return "", ErrNoToken
}
