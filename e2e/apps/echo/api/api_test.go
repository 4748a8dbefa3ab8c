package api

import (
	"reflect"
	"testing"
)

func TestIdentityFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		hostname string
		want     Identity
	}{
		{
			name: "all set",
			env: map[string]string{EnvPodName: "echo-v1-x", EnvPodNamespace: "demo", EnvServiceAccount: "echo",
				EnvVersion: "v1", EnvNodeName: "node-2", EnvPodIP: "10.2.0.9"},
			hostname: "h",
			want:     Identity{Pod: "echo-v1-x", Namespace: "demo", ServiceAccount: "echo", Version: "v1", Node: "node-2", PodIP: "10.2.0.9", Hostname: "h"},
		},
		{name: "pod falls back to hostname", env: map[string]string{EnvVersion: "v2"}, hostname: "box", want: Identity{Pod: "box", Version: "v2", Hostname: "box"}},
		{name: "empty POD_NAME falls back too", env: map[string]string{EnvPodName: ""}, hostname: "box", want: Identity{Pod: "box", Hostname: "box"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if got := IdentityFromEnv(lookup, tc.hostname); got != tc.want {
				t.Errorf("IdentityFromEnv = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestGRPCResponseRoundTrip(t *testing.T) {
	in := GRPCResponse{
		Identity:   Identity{Pod: "p", Namespace: "n", Version: "v1"},
		ServerPort: 7070, Protocol: "gRPC", Method: GRPCMethodEcho, Authority: "echo:7070",
		SourceIP: "10.0.0.1", SourcePort: 40000,
		Metadata: map[string]string{"x-user": "alice"},
		Request:  map[string]any{"payload": "xx", "n": 2.0},
		Seq:      3,
		TLSPeer:  []string{"spiffe://cluster.local/ns/n/sa/s"},
	}
	s, err := EncodeGRPCResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Fields["pod"].GetStringValue(); got != "p" {
		t.Errorf("struct field pod = %q, want p", got)
	}
	out, err := DecodeGRPCResponse(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip =\n%+v\nwant\n%+v", out, in)
	}
}
