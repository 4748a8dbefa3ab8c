package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// DefaultMaxTTL caps (and is the default of) workload certificate lifetimes.
const DefaultMaxTTL = 24 * time.Hour

// DefaultNodeProxy is the service account allowed to impersonate pods on its node.
var DefaultNodeProxy = NamespacedName{Namespace: "istio-system", Name: "ztunnel"}

// Options configures a Server.
type Options struct {
	// CA signs certificates. Required.
	CA *certs.CA
	// TrustDomain of issued identities; default cluster.local.
	TrustDomain string
	// Authenticator checks bearer tokens; default a TokenReviewAuthenticator on Client.
	Authenticator Authenticator
	// Client is used for TokenReview (when Authenticator is nil), for
	// resolving a caller's node from its pod when the token lacks the
	// node-name extra, and for listing pods (when Pods is nil).
	Client kubernetes.Interface
	// Pods answers which pods run on a node; default ListPodsOnNode on Client.
	Pods PodsOnNode
	// NodeProxies may impersonate pods on their node; default [istio-system/ztunnel].
	NodeProxies []NamespacedName
	// DefaultTTL is issued when the request asks for none; default MaxTTL.
	DefaultTTL time.Duration
	// MaxTTL caps the requested validity; default DefaultMaxTTL.
	MaxTTL time.Duration
	// Registry receives the metrics; nil means not registered.
	Registry prometheus.Registerer
	// Logger; required.
	Logger *zap.Logger
}

// Server implements IstioCertificateService.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer
	o       Options
	ca      atomic.Pointer[certs.CA]
	metrics *metrics
	log     *zap.Logger
}

// NewServer validates the options and builds a Server.
func NewServer(o Options) (*Server, error) {
	if o.CA == nil {
		return nil, errors.New("ca server: no CA")
	}
	if o.Logger == nil {
		return nil, errors.New("ca server: no logger")
	}
	if o.TrustDomain == "" {
		o.TrustDomain = spiffe.DefaultTrustDomain
	}
	if o.Authenticator == nil || o.Pods == nil {
		if o.Client == nil {
			return nil, errors.New("ca server: need a Kubernetes client (or both an Authenticator and Pods)")
		}
		if o.Authenticator == nil {
			o.Authenticator = TokenReviewAuthenticator{Client: o.Client}
		}
		if o.Pods == nil {
			o.Pods = ListPodsOnNode{Client: o.Client}
		}
	}
	if o.NodeProxies == nil {
		o.NodeProxies = []NamespacedName{DefaultNodeProxy}
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.DefaultTTL <= 0 || o.DefaultTTL > o.MaxTTL {
		o.DefaultTTL = o.MaxTTL
	}
	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, metrics: m, log: o.Logger}
	s.SetCA(o.CA)
	return s, nil
}

// SetCA makes ca the signing CA of every later request (the cacerts Secret
// changed). Requests in flight finish with the CA they started with.
func (s *Server) SetCA(ca *certs.CA) {
	if ca == nil {
		return
	}
	s.ca.Store(ca)
	chain := ca.Chain()
	s.metrics.rootExpiry.Set(float64(chain[len(chain)-1].NotAfter.Unix()))
}

// CA returns the current signing CA.
func (s *Server) CA() *certs.CA { return s.ca.Load() }

// Register registers the service on a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterIstioCertificateServiceServer(r, s)
}

// refusal is a request refused with a gRPC code.
type refusal struct {
	code   codes.Code
	reason string
	msg    string // said to the caller: what to do
	err    error  // logged
}

// CreateCertificate implements IstioCertificateService.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.metrics.csr.Inc()
	impersonated := req.GetMetadata().GetFields()[ImpersonatedIdentityKey].GetStringValue()
	caller, id, chain, ref := s.handle(ctx, req, impersonated)
	if ref != nil {
		s.metrics.refusals.WithLabelValues(ref.reason).Inc()
		fields := []zap.Field{
			zap.String("caller", caller.String()), zap.String("node", caller.Node),
			zap.String("impersonated", impersonated), zap.String("reason", ref.reason),
			zap.Stringer("code", ref.code), zap.Error(ref.err),
		}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			fields = append(fields, zap.String("peer", p.Addr.String()))
		}
		s.log.Warn("certificate request refused", fields...)
		return nil, status.Error(ref.code, ref.msg)
	}
	resp := &pb.IstioCertificateResponse{}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, string(certs.EncodeCertsPEM([]*x509.Certificate{c})))
	}
	s.metrics.success.Inc()
	s.log.Debug("certificate issued", zap.String("caller", caller.String()), zap.Stringer("identity", id),
		zap.Time("notAfter", chain[0].NotAfter), zap.String("serial", chain[0].SerialNumber.Text(16)))
	return resp, nil
}

func (s *Server) handle(ctx context.Context, req *pb.IstioCertificateRequest, impersonated string) (Caller, spiffe.Identity, []*x509.Certificate, *refusal) {
	md, _ := metadata.FromIncomingContext(ctx)
	token, err := bearerToken(md)
	if err != nil {
		s.metrics.authnFail.Inc()
		return Caller{}, spiffe.Identity{}, nil, &refusal{codes.Unauthenticated, reasonUnauthenticated, err.Error(), err}
	}
	caller, err := s.o.Authenticator.Authenticate(ctx, token)
	if err != nil {
		s.metrics.authnFail.Inc()
		if errors.Is(err, ErrTokenRejected) || errors.Is(err, ErrNotServiceAccount) {
			return Caller{}, spiffe.Identity{}, nil, &refusal{codes.Unauthenticated, reasonUnauthenticated, "authentication failed: " + err.Error(), err}
		}
		return Caller{}, spiffe.Identity{}, nil, &refusal{codes.Unavailable, reasonUnavailable, "cannot check the token right now; retry", err}
	}

	id, impersonating, err := target(caller, impersonated, s.o.TrustDomain)
	switch {
	case errors.Is(err, ErrBadIdentity):
		return caller, id, nil, &refusal{codes.InvalidArgument, reasonInvalidArgument, err.Error(), err}
	case err != nil:
		s.metrics.authnFail.Inc()
		return caller, id, nil, &refusal{codes.PermissionDenied, reasonPermissionDenied, err.Error(), err}
	}
	if impersonating {
		if ref := s.authorizeImpersonation(ctx, &caller, id); ref != nil {
			s.metrics.authnFail.Inc()
			return caller, id, nil, ref
		}
	}

	ttl, err := effectiveTTL(req.GetValidityDuration(), s.o.DefaultTTL, s.o.MaxTTL)
	if err != nil {
		return caller, id, nil, &refusal{codes.InvalidArgument, reasonInvalidArgument, err.Error(), err}
	}
	csrDER, err := certs.ParseCSRPEM([]byte(req.GetCsr()))
	if err == nil {
		_, err = certs.ParseCSR(csrDER)
	}
	if err != nil {
		s.metrics.parseErr.Inc()
		return caller, id, nil, &refusal{codes.InvalidArgument, reasonInvalidCSR,
			"invalid CSR: " + err.Error() + " (send a PEM CERTIFICATE REQUEST signed by an ECDSA P-256/P-384 or RSA >= 2048 key)", err}
	}
	chain, err := s.ca.Load().SignCSR(csrDER, id, ttl)
	if err != nil {
		label, code := "internal", codes.Internal
		if errors.Is(err, certs.ErrSignerExpired) {
			label, code = "ca_expired", codes.FailedPrecondition
		}
		s.metrics.signErr.WithLabelValues(label).Inc()
		return caller, id, nil, &refusal{code, reasonSign, "signing failed: " + err.Error(), err}
	}
	return caller, id, chain, nil
}

// authorizeImpersonation allows a node proxy to get the identity of a pod on
// its own node. It fills caller.Node when it has to look the node up.
func (s *Server) authorizeImpersonation(ctx context.Context, caller *Caller, want spiffe.Identity) *refusal {
	if err := callerTrusted(*caller, s.o.NodeProxies); err != nil {
		return &refusal{codes.PermissionDenied, reasonPermissionDenied, "permission denied: " + err.Error(), err}
	}
	if caller.Node == "" && caller.PodName != "" && s.o.Client != nil {
		node, err := s.nodeOfPod(ctx, *caller)
		if err != nil {
			return &refusal{codes.PermissionDenied, reasonPermissionDenied, "permission denied: " + err.Error(), err}
		}
		caller.Node = node
	}
	if caller.Node == "" {
		return &refusal{codes.PermissionDenied, reasonPermissionDenied, "permission denied: " + ErrNoNode.Error(), ErrNoNode}
	}
	pods, err := s.o.Pods.PodsOnNode(ctx, caller.Node)
	if err != nil {
		return &refusal{codes.Unavailable, reasonUnavailable, "cannot list pods on the node right now; retry", err}
	}
	if err := podOnNode(want, caller.Node, pods); err != nil {
		return &refusal{codes.PermissionDenied, reasonPermissionDenied,
			"permission denied: " + err.Error() + " (the pod may not be scheduled yet; retry)", err}
	}
	return nil
}

// nodeOfPod resolves the node of the pod a token is bound to, for API servers
// that do not put the node name in the token.
func (s *Server) nodeOfPod(ctx context.Context, c Caller) (string, error) {
	pod, err := s.o.Client.CoreV1().Pods(c.Namespace).Get(ctx, c.PodName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%w: caller's pod %s/%s not found", ErrNoNode, c.Namespace, c.PodName)
	}
	if err != nil {
		return "", fmt.Errorf("get caller's pod %s/%s: %w", c.Namespace, c.PodName, err)
	}
	if c.PodUID != "" && string(pod.UID) != c.PodUID {
		return "", fmt.Errorf("%w: caller's pod %s/%s was replaced (uid %s, token for %s)", ErrNoNode, c.Namespace, c.PodName, pod.UID, c.PodUID)
	}
	if pod.Spec.NodeName == "" || pod.Spec.ServiceAccountName != c.ServiceAccount {
		return "", fmt.Errorf("%w: caller's pod %s/%s is unscheduled or runs as another service account", ErrNoNode, c.Namespace, c.PodName)
	}
	return pod.Spec.NodeName, nil
}
