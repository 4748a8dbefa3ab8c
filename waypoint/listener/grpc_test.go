package listener_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// greeter serves helloworld.Greeter by hand (no generated code): SayHello
// (unary), SayGoodbye (unary) and Chat (bidirectional streaming), with
// messages as StringValue.
func greeter(name string) backend {
	return func(t testing.TB, ln net.Listener) {
		srv := grpc.NewServer()
		unary := func(method string) grpc.MethodDesc {
			return grpc.MethodDesc{MethodName: method, Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := &wrapperspb.StringValue{}
				if err := dec(in); err != nil {
					return nil, err
				}
				if in.Value == "fail" {
					return nil, status.Error(codes.NotFound, "no such greeting")
				}
				grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", name))
				return wrapperspb.String(method + " " + in.Value + " from " + name), nil
			}}
		}
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: "helloworld.Greeter",
			HandlerType: (*any)(nil),
			Methods:     []grpc.MethodDesc{unary("SayHello"), unary("SayGoodbye")},
			Streams: []grpc.StreamDesc{{StreamName: "Chat", ServerStreams: true, ClientStreams: true,
				Handler: func(_ any, s grpc.ServerStream) error {
					for {
						in := &wrapperspb.StringValue{}
						if err := s.RecvMsg(in); errors.Is(err, io.EOF) {
							return nil
						} else if err != nil {
							return err
						}
						if err := s.SendMsg(wrapperspb.String(strings.ToUpper(in.Value) + " from " + name)); err != nil {
							return err
						}
					}
				}}},
		}, struct{}{})
		go srv.Serve(ln)
		t.Cleanup(srv.Stop)
	}
}

func (e *env) grpcConn(t *testing.T, authority string) *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///greeter.grpc.svc.cluster.local:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return e.dial(ctx, sleepID, authority)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPC(t *testing.T) {
	e := newEnv(t, "grpc", map[string]backend{"10.244.1.31": greeter("v1"), "10.244.2.32": greeter("v2")})
	cc := e.grpcConn(t, "10.96.1.10:50051")
	ctx := t.Context()

	call := func(ctx context.Context, method, in string) (string, string, error) {
		out := &wrapperspb.StringValue{}
		var tr metadata.MD
		err := cc.Invoke(ctx, "/helloworld.Greeter/"+method, wrapperspb.String(in), out, grpc.Trailer(&tr))
		by := ""
		if v := tr.Get("x-served-by"); len(v) > 0 {
			by = v[0]
		}
		return out.Value, by, err
	}
	for _, tc := range []struct {
		name, method, in, version string
		want, by                  string
	}{
		{"unary", "SayHello", "world", "", "SayHello world from v1", "v1"},
		{"header match", "SayHello", "world", "v2", "SayHello world from v2", "v2"},
		// The service prefix route precedes the method regex route (Istio order).
		{"prefix before regex", "SayGoodbye", "moon", "", "SayGoodbye moon from v1", "v1"},
	} {
		cctx := ctx
		if tc.version != "" {
			cctx = metadata.AppendToOutgoingContext(ctx, "x-version", tc.version)
		}
		got, by, err := call(cctx, tc.method, tc.in)
		if err != nil || got != tc.want || by != tc.by {
			t.Errorf("%s: %q by %q, %v; want %q by %q (trailer)", tc.name, got, by, err, tc.want, tc.by)
		}
	}
	if _, _, err := call(ctx, "SayHello", "fail"); status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such greeting" {
		t.Errorf("error status through the waypoint: %v", err)
	}
	// No route: a gRPC answer, not an HTTP 404 page.
	if err := cc.Invoke(ctx, "/other.Service/Do", wrapperspb.String("x"), &wrapperspb.StringValue{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unrouted method: %v, want Unimplemented", err)
	}

	s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/helloworld.Greeter/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"a", "b", "c"} {
		if err := s.SendMsg(wrapperspb.String(w)); err != nil {
			t.Fatal(err)
		}
		// Each answer arrives before the next message is sent: streaming,
		// not buffered.
		got := &wrapperspb.StringValue{}
		if err := s.RecvMsg(got); err != nil {
			t.Fatal(err)
		}
		if got.Value != strings.ToUpper(w)+" from v1" {
			t.Errorf("stream answer %q", got.Value)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(&wrapperspb.StringValue{}); !errors.Is(err, io.EOF) {
		t.Errorf("end of stream: %v, want EOF (status OK)", err)
	}
}

// An HTTP/1.1 client reaching an HTTP/2 cluster: the waypoint speaks h2c
// upstream.
func TestHTTP1ToHTTP2Cluster(t *testing.T) {
	e := newEnv(t, "grpc", map[string]backend{"10.244.1.31": whoami("v1"), "10.244.2.32": whoami("v2")})
	c := e.httpClient(sleepID, "10.96.1.10:50051")
	code, body, h := get(t, c, "GET", "http://greeter.grpc:50051/helloworld.Greeter/Any")
	if code != 200 || body != "v1" || h.Get("X-Seen-Proto") != "HTTP/2.0" {
		t.Errorf("%d %q, backend saw %q; want 200 v1 over HTTP/2.0", code, body, h.Get("X-Seen-Proto"))
	}
}
