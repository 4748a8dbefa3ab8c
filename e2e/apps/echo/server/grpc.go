package server

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/internal/knobs"
)

// grpcEcho implements api.EchoServer.
type grpcEcho struct {
	id    api.Identity
	log   *zap.Logger
	sleep func(ctx context.Context, d time.Duration) error
	rand  func() float64
	// failEvery counts calls carrying the fail-every knob (shared with
	// the HTTP handler).
	failEvery *atomic.Uint64
}

func newGRPCEcho(id api.Identity, log *zap.Logger, failEvery *atomic.Uint64) *grpcEcho {
	return &grpcEcho{id: id, log: log, sleep: sleepCtx, rand: rand.Float64, failEvery: failEvery}
}

var _ api.EchoServer = (*grpcEcho)(nil)

// identityMD is sent as header and trailer of every call, so a client sees
// who answered also when the call fails.
func (g *grpcEcho) identityMD() metadata.MD {
	return metadata.Pairs(strings.ToLower(api.HeaderPod), g.id.Pod, strings.ToLower(api.HeaderVersion), g.id.Version)
}

// applyKnobs sleeps and decides the status of a call from its metadata.
func (g *grpcEcho) applyKnobs(ctx context.Context, md metadata.MD) error {
	k, err := knobs.Parse(nil, http.Header(md))
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if k.Delay > 0 {
		if err := g.sleep(ctx, k.Delay); err != nil {
			return status.FromContextError(err).Err()
		}
	}
	if k.Fail > 0 && knobs.ShouldFail(k.Fail, g.rand()) {
		return status.Error(codes.Unavailable, "echo: failed on purpose (fail knob)")
	}
	if failsEvery(g.failEvery, k) {
		return status.Error(codes.Unavailable, "echo: failed on purpose (fail-every knob)")
	}
	if k.HasGRPCCode && codes.Code(k.GRPCCode) != codes.OK {
		return status.Errorf(codes.Code(k.GRPCCode), "echo: answered code %d on purpose (grpc-code knob)", k.GRPCCode)
	}
	return nil
}

func (g *grpcEcho) response(ctx context.Context, method string, md metadata.MD, in *structpb.Struct, seq int) api.GRPCResponse {
	r := api.GRPCResponse{
		Identity: g.id,
		Protocol: "gRPC",
		Method:   method,
		Metadata: make(map[string]string, len(md)),
		Request:  in.AsMap(),
		Seq:      seq,
	}
	for k, vs := range md {
		r.Metadata[k] = strings.Join(vs, ", ")
	}
	if a := md.Get(":authority"); len(a) > 0 {
		r.Authority = a[0]
	}
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			r.SourceIP, r.SourcePort = splitAddr(p.Addr.String())
		}
		r.ServerPort = addrPort(p.LocalAddr)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			r.TLSPeer = uriSANs(ti.State.PeerCertificates[0])
		}
	}
	return r
}

// Echo answers one call.
func (g *grpcEcho) Echo(ctx context.Context, in *structpb.Struct) (*structpb.Struct, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, g.identityMD())
	_ = grpc.SetTrailer(ctx, g.identityMD())
	if err := g.applyKnobs(ctx, md); err != nil {
		return nil, err
	}
	out, err := api.EncodeGRPCResponse(g.response(ctx, api.GRPCMethodEcho, md, in, 0))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}

// EchoStream answers every message of the stream until the client closes
// its side. Knobs in the call metadata apply once, before the first answer.
func (g *grpcEcho) EchoStream(stream grpc.BidiStreamingServer[structpb.Struct, structpb.Struct]) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	stream.SetTrailer(g.identityMD())
	if err := stream.SendHeader(g.identityMD()); err != nil {
		return err
	}
	if err := g.applyKnobs(ctx, md); err != nil {
		return err
	}
	for seq := 1; ; seq++ {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out, err := api.EncodeGRPCResponse(g.response(ctx, api.GRPCMethodEchoStream, md, in, seq))
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
