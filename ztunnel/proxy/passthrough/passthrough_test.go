package passthrough

import (
	"errors"
	"net/netip"
	"testing"

	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/ztunnel/proxy/internal/fixture"
	"github.com/ambient-mesh/ambient/ztunnel/rbac"
	"github.com/ambient-mesh/ambient/ztunnel/route"
)

func TestDecide(t *testing.T) {
	mesh := []*workloadapi.Address{
		fixture.Workload("server", "b", "server", "B", "10.0.2.1"),
		fixture.Workload("legacy", "b", "legacy", "B", "10.0.2.3", fixture.NotHBONE),
		fixture.Workload("remote", "b", "server", "C", "10.0.3.1"),
	}
	tests := []struct {
		name     string
		policies []*security.Authorization
		dst      string
		wantErr  error
		reason   string
	}{
		{name: "permissive", dst: "10.0.2.1:8080", reason: rbac.ReasonNoPolicy},
		{name: "strict namespace", policies: []*security.Authorization{rbac.StrictMTLS("b", "strict", security.Scope_NAMESPACE)},
			dst: "10.0.2.1:8080", wantErr: ErrDenied, reason: ReasonStrict},
		{name: "strict mesh-wide", policies: []*security.Authorization{rbac.StrictMTLS("istio-system", "strict", security.Scope_GLOBAL)},
			dst: "10.0.2.1:8080", wantErr: ErrDenied, reason: ReasonStrict},
		{name: "strict elsewhere", policies: []*security.Authorization{rbac.StrictMTLS("a", "strict", security.Scope_NAMESPACE)},
			dst: "10.0.2.1:8080", reason: rbac.ReasonNoPolicy},
		{name: "allow by principal never matches plaintext", policies: []*security.Authorization{fixture.AllowPrincipal("b", "allow", "cluster.local/ns/a/sa/client")},
			dst: "10.0.2.1:8080", wantErr: ErrDenied, reason: rbac.ReasonNoAllowMatch},
		{name: "deny port", policies: []*security.Authorization{fixture.DenyPort("b", "deny", 8080)},
			dst: "10.0.2.1:8080", wantErr: ErrDenied, reason: rbac.ReasonDenyMatched},
		{name: "unknown destination", dst: "10.0.9.9:80", wantErr: ErrNotLocal, reason: ReasonNotLocal},
		{name: "not enrolled", dst: "10.0.2.3:80", wantErr: ErrNotLocal, reason: ReasonNotLocal},
		{name: "other node", dst: "10.0.3.1:80", wantErr: ErrNotLocal, reason: ReasonNotLocal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := fixture.Store(t, mesh, tt.policies...)
			v, err := Decide(st.Snapshot(), route.Local{Node: "B"}, netip.MustParseAddr("192.0.2.7"), netip.MustParseAddrPort(tt.dst))
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if v.Reason != tt.reason {
				t.Fatalf("reason = %q, want %q", v.Reason, tt.reason)
			}
		})
	}
}
