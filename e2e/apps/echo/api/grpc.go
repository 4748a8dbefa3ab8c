package api

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// gRPC names of the echo service.
const (
	GRPCService          = "echo.Echo"
	GRPCMethodEcho       = "/echo.Echo/Echo"
	GRPCMethodEchoStream = "/echo.Echo/EchoStream"
)

// GRPCResponse is the decoded form of the Struct a gRPC echo returns (see
// DecodeGRPCResponse).
type GRPCResponse struct {
	Identity
	ServerPort int    `json:"serverPort"`
	Protocol   string `json:"protocol"`
	Method     string `json:"method"`
	Authority  string `json:"authority"`
	SourceIP   string `json:"sourceIP"`
	SourcePort int    `json:"sourcePort"`
	// Metadata is the request metadata, several values joined with ", ".
	Metadata map[string]string `json:"metadata"`
	// Request is the message the server received.
	Request map[string]any `json:"request"`
	// Seq numbers the messages of one EchoStream call from 1 (0 for Echo).
	Seq     int      `json:"seq"`
	TLSPeer []string `json:"tlsPeer,omitempty"`
}

// EncodeGRPCResponse turns r into the Struct sent on the wire.
func EncodeGRPCResponse(r GRPCResponse) (*structpb.Struct, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode gRPC echo response: %w", err)
	}
	s := new(structpb.Struct)
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("encode gRPC echo response: %w", err)
	}
	return s, nil
}

// DecodeGRPCResponse reads a Struct returned by Echo or EchoStream.
func DecodeGRPCResponse(s *structpb.Struct) (GRPCResponse, error) {
	var r GRPCResponse
	b, err := protojson.Marshal(s)
	if err != nil {
		return r, fmt.Errorf("decode gRPC echo response: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode gRPC echo response (is the server an echo server?): %w", err)
	}
	return r, nil
}

// EchoServer is the server side of echo.Echo.
type EchoServer interface {
	// Echo returns who answered and what it saw.
	Echo(context.Context, *structpb.Struct) (*structpb.Struct, error)
	// EchoStream answers each message of a bidirectional stream.
	EchoStream(grpc.BidiStreamingServer[structpb.Struct, structpb.Struct]) error
}

// RegisterEchoServer registers srv on s.
func RegisterEchoServer(s grpc.ServiceRegistrar, srv EchoServer) {
	s.RegisterService(&EchoServiceDesc, srv)
}

// EchoServiceDesc describes echo.Echo by hand, as protoc-gen-go-grpc would
// for:
//
//	service Echo {
//	  rpc Echo(google.protobuf.Struct) returns (google.protobuf.Struct);
//	  rpc EchoStream(stream google.protobuf.Struct) returns (stream google.protobuf.Struct);
//	}
var EchoServiceDesc = grpc.ServiceDesc{
	ServiceName: GRPCService,
	HandlerType: (*EchoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler:    echoHandler,
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "EchoStream",
		Handler:       echoStreamHandler,
		ServerStreams: true,
		ClientStreams: true,
	}},
	Metadata: "echo.proto",
}

func echoHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(EchoServer).Echo(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: GRPCMethodEcho}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(EchoServer).Echo(ctx, req.(*structpb.Struct))
	}
	return interceptor(ctx, in, info, handler)
}

func echoStreamHandler(srv any, stream grpc.ServerStream) error {
	return srv.(EchoServer).EchoStream(&grpc.GenericServerStream[structpb.Struct, structpb.Struct]{ServerStream: stream})
}

// EchoClient is the client stub of echo.Echo.
type EchoClient struct {
	cc grpc.ClientConnInterface
}

// NewEchoClient returns a stub calling echo.Echo over cc.
func NewEchoClient(cc grpc.ClientConnInterface) *EchoClient {
	return &EchoClient{cc: cc}
}

// Echo calls echo.Echo/Echo.
func (c *EchoClient) Echo(ctx context.Context, in *structpb.Struct, opts ...grpc.CallOption) (*structpb.Struct, error) {
	out := new(structpb.Struct)
	if err := c.cc.Invoke(ctx, GRPCMethodEcho, in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// EchoStream opens an echo.Echo/EchoStream bidirectional stream.
func (c *EchoClient) EchoStream(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[structpb.Struct, structpb.Struct], error) {
	s, err := c.cc.NewStream(ctx, &EchoServiceDesc.Streams[0], GRPCMethodEchoStream, opts...)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[structpb.Struct, structpb.Struct]{ClientStream: s}, nil
}
