package app

import (
	"reflect"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/istiod-lite/xds"
)

func TestAdaptConnections(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := []xds.ConnectionStatus{
		{ID: 1, NodeID: "ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local", ConnectedSince: at,
			Types: []xds.TypeStatus{
				{TypeURL: "a", Sync: xds.SyncSynced, LastSentVersion: "3", LastAckedVersion: "3", LastSentTime: at},
				{TypeURL: "b", Sync: xds.SyncStale, LastSentVersion: "4", LastAckedVersion: "3"},
				{TypeURL: "c", Sync: xds.SyncNACKed, LastSentVersion: "5", LastAckedVersion: "5", NACKs: 1, LastNACK: &xds.NACKStatus{Error: "bad"}},
				{TypeURL: "d", Sync: xds.SyncNotSent},
			}},
		{ID: 2, NodeID: "custom", Metadata: map[string]string{"POD_NAME": "wp-1", "NAMESPACE": "demo"}},
		{ID: 3, NodeID: "plain-id"},
	}
	got := AdaptConnections(in)
	want := []Connection{
		{NodeID: in[0].NodeID, PodName: "ztunnel-abc", PodNamespace: "istio-system", ConnectedSince: at, ID: 1, Types: map[string]ConnTypeState{
			"a": {SentVersion: "3", AckedVersion: "3", LastPush: at, Sync: xds.SyncSynced},
			"b": {SentVersion: "4", AckedVersion: "3", Sync: xds.SyncStale},
			"c": {SentVersion: "5", AckedVersion: "", Nacks: 1, LastError: "bad", Sync: xds.SyncNACKed},
			"d": {Sync: xds.SyncNotSent},
		}},
		{NodeID: "custom", PodName: "wp-1", PodNamespace: "demo", ID: 2, Metadata: in[1].Metadata, Types: map[string]ConnTypeState{}},
		{NodeID: "plain-id", PodName: "plain-id", ID: 3, Types: map[string]ConnTypeState{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AdaptConnections =\n%+v\nwant\n%+v", got, want)
	}
}
