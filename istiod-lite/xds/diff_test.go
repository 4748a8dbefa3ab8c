package xds

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"istio.io/istio/pkg/workloadapi/security"
)

func pol(name string, action security.Action) *security.Authorization {
	return &security.Authorization{Name: name, Namespace: "ns", Action: action}
}

func TestDiff(t *testing.T) {
	allow, deny := pol("p", security.Action_ALLOW), pol("p", security.Action_DENY)
	for _, tc := range []struct {
		name             string
		current, desired map[string]proto.Message
		wantUpsert       []string
		wantRemove       []string
	}{
		{"both empty", nil, nil, nil, nil},
		{"all new", nil, map[string]proto.Message{"a": allow, "b": deny}, []string{"a", "b"}, nil},
		{"equal copies are unchanged", map[string]proto.Message{"a": allow}, map[string]proto.Message{"a": proto.Clone(allow)}, nil, nil},
		{"changed", map[string]proto.Message{"a": allow, "b": allow}, map[string]proto.Message{"a": deny, "b": allow}, []string{"a"}, nil},
		{"removed", map[string]proto.Message{"a": allow, "b": allow, "c": allow}, map[string]proto.Message{"b": allow}, nil, []string{"a", "c"}},
		{"everything removed", map[string]proto.Message{"a": allow}, map[string]proto.Message{}, nil, []string{"a"}},
		{"nil message is a change", map[string]proto.Message{"a": allow}, map[string]proto.Message{"a": nil}, []string{"a"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, rm := diff(tc.current, tc.desired)
			if got := sortedKeys(up); !slices.Equal(got, tc.wantUpsert) {
				t.Errorf("upserts = %v, want %v", got, tc.wantUpsert)
			}
			if !slices.Equal(rm, tc.wantRemove) {
				t.Errorf("removes = %v, want %v", rm, tc.wantRemove)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestSyncState(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   TypeStatus
		want string
	}{
		{"nothing sent", TypeStatus{}, SyncNotSent},
		{"sent not acked", TypeStatus{LastSentNonce: "2", LastAckedNonce: "1"}, SyncStale},
		{"acked", TypeStatus{LastSentNonce: "2", LastAckedNonce: "2"}, SyncSynced},
		{"nacked", TypeStatus{LastSentNonce: "3", LastAckedNonce: "1", LastNACK: &NACKStatus{Nonce: "3"}}, SyncNACKed},
		{"old nack then newer ack", TypeStatus{LastSentNonce: "4", LastAckedNonce: "4", LastNACK: &NACKStatus{Nonce: "3"}}, SyncSynced},
		{"old nack, newer pending", TypeStatus{LastSentNonce: "4", LastAckedNonce: "2", LastNACK: &NACKStatus{Nonce: "3"}}, SyncStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncState(tc.ts); got != tc.want {
				t.Errorf("syncState = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNodeMetadata(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{
		"NODE_NAME": "node-a", "CLUSTER_ID": "Kubernetes", "ENVOY_PROMETHEUS_PORT": 15090.0, "DRY": true,
		"LABELS": map[string]any{"app": "x"}, "LIST": []any{"a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := nodeMetadata(md)
	want := map[string]string{"NODE_NAME": "node-a", "CLUSTER_ID": "Kubernetes", "ENVOY_PROMETHEUS_PORT": "15090", "DRY": "true"}
	if len(got) != len(want) {
		t.Errorf("nodeMetadata = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("nodeMetadata[%s] = %q, want %q", k, got[k], v)
		}
	}
	if nodeMetadata(nil) != nil {
		t.Error("nodeMetadata(nil) is not nil")
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		md   metadata.MD
		want string
	}{
		{"bearer", metadata.Pairs("authorization", "Bearer abc"), "abc"},
		{"no metadata", nil, ""},
		{"basic auth", metadata.Pairs("authorization", "Basic abc"), ""},
		{"empty bearer", metadata.Pairs("authorization", "Bearer "), ""},
		{"second value", metadata.Pairs("authorization", "Basic x", "authorization", "Bearer t2"), "t2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tc.md)
			}
			got, err := BearerToken(ctx)
			if got != tc.want {
				t.Errorf("BearerToken = %q, want %q", got, tc.want)
			}
			if (tc.want == "") != errors.Is(err, ErrNoBearerToken) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestIdentityString(t *testing.T) {
	if got := (Identity{Namespace: "istio-system", ServiceAccount: "ztunnel"}).String(); got != "system:serviceaccount:istio-system:ztunnel" {
		t.Errorf("String = %q", got)
	}
	if (Identity{}).String() != "" {
		t.Error("zero identity prints non-empty")
	}
}
