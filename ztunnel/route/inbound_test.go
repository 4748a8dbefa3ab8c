package route

import (
	"errors"
	"strings"
	"testing"
)

func TestInboundTarget(t *testing.T) {
	snap := fixture(t)
	tests := []struct {
		name      string
		local     Local
		authority string
		peer      string // service account in default
		wantUID   string
		wantFromW bool
		wantErr   error
		errMatch  string
	}{
		{name: "local enrolled workload", local: Local{Node: "B"}, authority: "10.0.2.2:8080", peer: "sleep", wantUID: "echo-b"},
		{name: "v4-mapped authority", local: Local{Node: "B"}, authority: "[::ffff:10.0.2.2]:8080", peer: "sleep", wantUID: "echo-b"},
		{name: "workload on another node", local: Local{Node: "A"}, authority: "10.0.2.2:8080", peer: "sleep",
			wantErr: ErrNotLocal, errMatch: `workload echo-b is on node "B", this is "A"`},
		{name: "node check disabled in local mode", local: Local{}, authority: "10.0.2.2:8080", peer: "sleep", wantUID: "echo-b"},
		{name: "unknown IP", local: Local{Node: "B"}, authority: "10.9.9.9:80", peer: "sleep", wantErr: ErrUnknownDestination},
		{name: "service VIP is not a pod", local: Local{Node: "B"}, authority: "10.96.0.10:80", peer: "sleep",
			wantErr: ErrUnknownDestination, errMatch: "is service default/echo"},
		{name: "other network", local: Local{Node: "B", Network: "net2"}, authority: "10.0.2.2:8080", peer: "sleep", wantErr: ErrUnknownDestination},
		{name: "not enrolled", local: Local{Node: "A"}, authority: "10.0.1.20:8080", peer: "sleep", wantErr: ErrNotEnrolled},
		{name: "port zero", local: Local{Node: "B"}, authority: "10.0.2.2:0", peer: "sleep", wantErr: ErrBadAuthority},
		{name: "waypoint-bound workload from its waypoint", local: Local{Node: "B"}, authority: "10.0.2.50:5432", peer: "waypoint",
			wantUID: "db", wantFromW: true},
		{name: "waypoint-bound workload bypassed", local: Local{Node: "B"}, authority: "10.0.2.50:5432", peer: "sleep",
			wantErr: ErrWaypointBypass, errMatch: "peer spiffe://cluster.local/ns/default/sa/sleep"},
		{name: "service waypoint does not restrict direct pod traffic", local: Local{Node: "B"}, authority: "10.0.2.6:9080", peer: "sleep",
			wantUID: "reviews-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := InboundTarget(snap, tt.local, ap(tt.authority), id(tt.peer))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatalf("InboundTarget: %v", err)
			}
			if got.Workload.UID != tt.wantUID || got.FromWaypoint != tt.wantFromW {
				t.Errorf("got workload %s fromWaypoint %v, want %s %v", got.Workload.UID, got.FromWaypoint, tt.wantUID, tt.wantFromW)
			}
			if want := ap(tt.authority); got.Target.Addr() != want.Addr().Unmap() || got.Target.Port() != want.Port() {
				t.Errorf("Target = %v, want %v", got.Target, want)
			}
		})
	}
}
