package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// grpcDoer calls echo.Echo/Echo over plaintext HTTP/2.
type grpcDoer struct {
	addr   string
	opts   []grpc.DialOption
	md     metadata.MD
	in     *structpb.Struct
	shared *grpc.ClientConn // nil: a new connection per call
}

func newGRPCDoer(t Target, o Options) (*grpcDoer, error) {
	d := &grpcDoer{
		addr: t.Addr,
		opts: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		md:   metadata.MD{},
	}
	for k, vs := range o.Headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			d.opts = append(d.opts, grpc.WithAuthority(vs[0]))
			continue
		}
		d.md[strings.ToLower(k)] = vs
	}
	in, err := structpb.NewStruct(map[string]any{"payload": strings.Repeat("x", o.BodySize)})
	if err != nil {
		return nil, fmt.Errorf("build gRPC request: %w", err)
	}
	d.in = in
	if o.KeepAlive && !o.NewConn {
		cc, err := grpc.NewClient(d.addr, d.opts...)
		if err != nil {
			return nil, fmt.Errorf("gRPC target %q: %w", o.Target, err)
		}
		d.shared = cc
	}
	return d, nil
}

func (d *grpcDoer) close() {
	if d.shared != nil {
		_ = d.shared.Close()
	}
}

func (d *grpcDoer) do(ctx context.Context) outcome {
	cc := d.shared
	if cc == nil {
		c, err := grpc.NewClient(d.addr, d.opts...)
		if err != nil {
			return outcome{err: err}
		}
		defer c.Close()
		cc = c
	}
	var header, trailer metadata.MD
	ctx = metadata.NewOutgoingContext(ctx, d.md)
	out, err := api.NewEchoClient(cc).Echo(ctx, d.in, grpc.Header(&header), grpc.Trailer(&trailer))
	return grpcOutcome(out, err, header, trailer)
}

// grpcOutcome classifies a call's result: an echo answer, a status some
// server sent, or no answer.
func grpcOutcome(out *structpb.Struct, err error, header, trailer metadata.MD) outcome {
	pod := firstMD(api.HeaderPod, header, trailer)
	version := firstMD(api.HeaderVersion, header, trailer)
	if err == nil {
		r, derr := api.DecodeGRPCResponse(out)
		if derr != nil {
			return outcome{responded: true, code: codes.OK.String(), pod: pod, version: version, err: derr}
		}
		return outcome{responded: true, ok: true, code: codes.OK.String(), pod: r.Pod, version: r.Version}
	}
	code := status.Code(err)
	switch {
	case pod != "":
	case code == codes.Unavailable, code == codes.DeadlineExceeded, code == codes.Canceled:
		return outcome{err: err}
	}
	return outcome{responded: true, code: code.String(), pod: pod, version: version}
}

func firstMD(key string, mds ...metadata.MD) string {
	for _, md := range mds {
		if v := md.Get(key); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
