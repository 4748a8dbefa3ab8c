package api

// HTTPResponse is the JSON body of every HTTP answer of an echo server
// (except /healthz): who answered and what it saw.
type HTTPResponse struct {
	Identity
	// ServerPort is the local port the request arrived on.
	ServerPort int `json:"serverPort"`
	// Protocol is "HTTP/1.1" or "HTTP/2.0".
	Protocol   string `json:"protocol"`
	Method     string `json:"method"`
	Host       string `json:"host"`
	Path       string `json:"path"`
	Query      string `json:"query"`
	SourceIP   string `json:"sourceIP"`
	SourcePort int    `json:"sourcePort"`
	// Headers are the request headers, canonical keys, several values
	// joined with ", ".
	Headers map[string]string `json:"headers"`
	// BodyBytes is the size of the request body the server read.
	BodyBytes int64 `json:"bodyBytes"`
	// Code is the status code the server answered with.
	Code int `json:"code"`
	// TLSPeer lists the URI SANs of the client certificate (TLS port only).
	TLSPeer []string `json:"tlsPeer,omitempty"`
	// Padding pads the body to the size asked with the size knob.
	Padding string `json:"padding"`
}

// Response headers set on every HTTP answer (also on errors produced by a
// knob), so a client can tell who answered without parsing the body.
const (
	HeaderPod     = "X-Echo-Pod"
	HeaderVersion = "X-Echo-Version"
)

// HealthPath answers 200 "ok" for readiness probes.
const HealthPath = "/healthz"

// Knob names: query parameters (?status=503) or request headers
// (x-echo-status: 503; gRPC metadata for gRPC). A query parameter wins
// over the header of the same knob.
const (
	// KnobStatus answers with this HTTP status code (200..599).
	KnobStatus = "status"
	// KnobDelay sleeps this Go duration (e.g. 250ms, 2s; at most 5m) first.
	KnobDelay = "delay"
	// KnobFail fails with 503 (gRPC: Unavailable) with this probability
	// (0..1).
	KnobFail = "fail"
	// KnobFailEvery fails with 503 (gRPC: Unavailable) the 1st, N+1st,
	// 2N+1st... request carrying it, counted per server (pod): 2 fails
	// exactly one request in two, whatever the timing.
	KnobFailEvery = "fail-every"
	// KnobSize pads the HTTP body to at least this many bytes (at most
	// 16 MiB).
	KnobSize = "size"
	// KnobGRPCCode answers gRPC calls with this status code (0..16).
	KnobGRPCCode = "grpc-code"

	// KnobHeaderPrefix prefixes a knob name to form its header name.
	KnobHeaderPrefix = "X-Echo-"
)

// TCPGreeting is sent by the server as the first line (JSON, then "\n") of
// every TCP connection, before it echoes bytes back.
type TCPGreeting struct {
	Identity
	ServerPort int    `json:"serverPort"`
	SourceIP   string `json:"sourceIP"`
	SourcePort int    `json:"sourcePort"`
}
