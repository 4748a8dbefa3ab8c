package client

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// grpcDoer calls echo.Echo/Echo (or EchoStream) over plaintext HTTP/2.
type grpcDoer struct {
	addr   string
	stream int // messages per EchoStream call; 0: unary Echo
	opts   []grpc.DialOption
	md     metadata.MD
	in     *structpb.Struct
	shared *grpc.ClientConn // nil: a new connection per call
}

func newGRPCDoer(t Target, o Options) (*grpcDoer, error) {
	d := &grpcDoer{
		addr:   t.Addr,
		opts:   []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		md:     metadata.MD{},
		stream: o.Stream,
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
	ctx = metadata.NewOutgoingContext(ctx, d.md)
	if d.stream > 0 {
		return d.doStream(ctx, cc)
	}
	var header, trailer metadata.MD
	out, err := api.NewEchoClient(cc).Echo(ctx, d.in, grpc.Header(&header), grpc.Trailer(&trailer))
	return grpcOutcome(out, err, header, trailer)
}

// doStream makes one EchoStream call: d.stream messages, each sent after
// the previous answer arrived (so a proxy that buffered a stream would
// stall it), then a half-close and the final status.
func (d *grpcDoer) doStream(ctx context.Context, cc *grpc.ClientConn) outcome {
	s, err := api.NewEchoClient(cc).EchoStream(ctx)
	if err != nil {
		return grpcOutcome(nil, err, nil, nil)
	}
	// fail reads the call's status after an error on the stream.
	fail := func(err error) outcome {
		if errors.Is(err, io.EOF) {
			_, err = s.Recv()
		}
		header, _ := s.Header()
		return grpcOutcome(nil, err, header, s.Trailer())
	}
	var last *structpb.Struct
	var first map[string]string
	for seq := 1; seq <= d.stream; seq++ {
		if err := s.Send(d.in); err != nil {
			return fail(err)
		}
		out, err := s.Recv()
		if err != nil {
			return fail(err)
		}
		r, err := api.DecodeGRPCResponse(out)
		if err == nil && (r.Seq != seq || r.Method != api.GRPCMethodEchoStream) {
			err = fmt.Errorf("stream answer %d: seq %d method %q, want seq %d of %s", seq, r.Seq, r.Method, seq, api.GRPCMethodEchoStream)
		}
		if err != nil {
			return outcome{responded: true, code: codes.OK.String(), pod: r.Pod, version: r.Version, err: err}
		}
		if seq == 1 {
			first = r.Metadata
		}
		last = out
	}
	if err := s.CloseSend(); err != nil {
		return fail(err)
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("stream: an answer more than the messages sent")
		}
		return fail(err)
	}
	o := grpcOutcome(last, nil, nil, nil)
	o.seen = first
	return o
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
		return outcome{responded: true, ok: true, code: codes.OK.String(), pod: r.Pod, version: r.Version, seen: r.Metadata}
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
