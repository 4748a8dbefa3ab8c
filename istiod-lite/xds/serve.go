package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Default listen addresses of istiod-lite's gRPC ports (xDS and CA).
const (
	DefaultPlaintextAddr = ":15010"
	DefaultTLSAddr       = ":15012"
)

// Identity is an authenticated caller: the Kubernetes ServiceAccount its
// bearer token belongs to. It is zero on the plaintext port.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// IsZero reports whether the identity is empty (unauthenticated).
func (i Identity) IsZero() bool { return i == Identity{} }

// String formats the identity as Kubernetes does, or "" when zero.
func (i Identity) String() string {
	if i.IsZero() {
		return ""
	}
	return "system:serviceaccount:" + i.Namespace + ":" + i.ServiceAccount
}

// Authenticator authenticates the caller of a gRPC call from its context
// (incoming metadata, peer). The TLS port uses one backed by TokenReview.
type Authenticator interface {
	Authenticate(ctx context.Context) (Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context) (Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context) (Identity, error) { return f(ctx) }

// NoAuthentication accepts every caller with a zero Identity (plaintext port 15010).
type NoAuthentication struct{}

// Authenticate returns a zero Identity.
func (NoAuthentication) Authenticate(context.Context) (Identity, error) { return Identity{}, nil }

// ErrNoBearerToken is returned by BearerToken when the call carries none.
var ErrNoBearerToken = errors.New(`no "authorization: Bearer <token>" metadata (mount a projected ServiceAccount token and send it)`)

// BearerToken extracts the bearer token from the incoming metadata, for
// Authenticator implementations.
func BearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok && tok != "" {
			return tok, nil
		}
	}
	return "", ErrNoBearerToken
}

type identityKey struct{}

// ContextWithIdentity returns ctx carrying id.
func ContextWithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFromContext returns the identity the auth interceptor stored.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

func authenticate(ctx context.Context, a Authenticator, method string) (context.Context, error) {
	id, err := a.Authenticate(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "%s: authenticate caller: %v", method, err)
	}
	return ContextWithIdentity(ctx, id), nil
}

// UnaryAuthInterceptor rejects unauthenticated unary calls with
// codes.Unauthenticated and stores the caller's Identity in the context.
func UnaryAuthInterceptor(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := authenticate(ctx, a, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamAuthInterceptor is UnaryAuthInterceptor for streams (ADS).
func StreamAuthInterceptor(a Authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := authenticate(ss.Context(), a, info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// NewGRPCServer builds a gRPC server for xDS and CA traffic: the auth
// interceptors, keepalives that detect dead proxies and tolerate the
// clients' 30 s pings, and a receive limit fitting large
// initial_resource_versions maps.
func NewGRPCServer(a Authenticator, opts ...grpc.ServerOption) *grpc.Server {
	base := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryAuthInterceptor(a)),
		grpc.ChainStreamInterceptor(StreamAuthInterceptor(a)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64 << 20),
	}
	return grpc.NewServer(append(base, opts...)...)
}

// ServeConfig configures Serve. An empty address (and no listener) disables
// that port.
type ServeConfig struct {
	// PlaintextAddr is the unauthenticated port (DefaultPlaintextAddr); local/dev only.
	PlaintextAddr string
	// TLSAddr is the TLS port (DefaultTLSAddr).
	TLSAddr string
	// PlaintextListener and TLSListener, if set, are used instead of the addresses.
	PlaintextListener, TLSListener net.Listener
	// TLS is the serving configuration of the TLS port (Certificates or
	// GetCertificate, so the serving certificate can rotate).
	TLS *tls.Config
	// Authenticator authenticates callers on the TLS port; required there.
	Authenticator Authenticator
	// Register registers the services (xDS, CA) on each gRPC server.
	Register func(grpc.ServiceRegistrar)
	// ShutdownGrace bounds the graceful stop (default 5 s); call
	// Server.Close first so that ADS streams end.
	ShutdownGrace time.Duration
}

// Serve runs the plaintext and TLS gRPC servers until ctx is cancelled
// (returns nil) or one of them fails (returns its error after stopping the
// other).
func Serve(ctx context.Context, logger *zap.Logger, cfg ServeConfig) error {
	if cfg.Register == nil {
		return errors.New("xds serve: no Register function")
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	type port struct {
		name string
		lis  net.Listener
		srv  *grpc.Server
	}
	var ports []port
	closeAll := func() {
		for _, p := range ports {
			_ = p.lis.Close()
		}
	}
	if cfg.PlaintextListener != nil || cfg.PlaintextAddr != "" {
		lis, err := listen(cfg.PlaintextListener, cfg.PlaintextAddr)
		if err != nil {
			return err
		}
		ports = append(ports, port{"plaintext", lis, NewGRPCServer(NoAuthentication{})})
	}
	if cfg.TLSListener != nil || cfg.TLSAddr != "" {
		if cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil) {
			closeAll()
			return errors.New("xds serve: TLS port configured without a serving certificate")
		}
		if cfg.Authenticator == nil {
			closeAll()
			return errors.New("xds serve: TLS port configured without an Authenticator")
		}
		lis, err := listen(cfg.TLSListener, cfg.TLSAddr)
		if err != nil {
			closeAll()
			return err
		}
		tcfg := cfg.TLS.Clone()
		if tcfg.MinVersion < tls.VersionTLS12 {
			tcfg.MinVersion = tls.VersionTLS12
		}
		ports = append(ports, port{"tls", lis, NewGRPCServer(cfg.Authenticator, grpc.Creds(credentials.NewTLS(tcfg)))})
	}
	if len(ports) == 0 {
		return errors.New("xds serve: no port configured")
	}

	errc := make(chan error, len(ports))
	var wg sync.WaitGroup
	for _, p := range ports {
		cfg.Register(p.srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			logger.Info("xds grpc listening", zap.String("port", p.name), zap.String("address", p.lis.Addr().String()))
			if err := p.srv.Serve(p.lis); err != nil {
				errc <- fmt.Errorf("serve grpc %s on %s: %w", p.name, p.lis.Addr(), err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, p := range ports {
		stopped := make(chan struct{})
		go func() {
			p.srv.GracefulStop()
			close(stopped)
		}()
		t := time.NewTimer(cfg.ShutdownGrace)
		select {
		case <-stopped:
		case <-t.C:
			p.srv.Stop()
			<-stopped
		}
		t.Stop()
	}
	wg.Wait()
	return err
}

func listen(l net.Listener, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("xds serve: listen on %s (is another istiod-lite running?): %w", addr, err)
	}
	return lis, nil
}
