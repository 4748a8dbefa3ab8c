package dump

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", p, got, want)
	}
}

var now = time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

func TestSections(t *testing.T) {
	b, err := os.ReadFile("testdata/config_dump.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseConfigDump(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Sections {
		for _, format := range []string{printer.Table, printer.JSON} {
			t.Run(s+"-"+format, func(t *testing.T) {
				rows, err := Table(s, d.Section(s), now)
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				if err := printer.Print(&out, format, rows, d.Section(s)); err != nil {
					t.Fatal(err)
				}
				golden(t, s+"."+format, out.Bytes())
			})
		}
	}
}

func TestSectionErrors(t *testing.T) {
	if _, err := ParseConfigDump([]byte("[]")); err == nil {
		t.Error("array accepted as config_dump")
	}
	d := ConfigDump{}
	if got := string(d.Section("workloads")); got != "[]" {
		t.Errorf("missing section = %s, want []", got)
	}
	if _, err := Table("workloads", []byte(`{"a":1}`), now); err == nil {
		t.Error("object accepted as workloads section")
	}
	if _, err := Table("clusters", []byte(`[]`), now); err == nil {
		t.Error("unknown section accepted")
	}
}

func TestTypeState(t *testing.T) {
	tests := []struct {
		s    TypeState
		want string
	}{
		{TypeState{SentVersion: "1", AckedVersion: "1"}, "SYNCED"},
		{TypeState{SentVersion: "2", AckedVersion: "1"}, "STALE"},
		{TypeState{SentVersion: "2", AckedVersion: "1", Nacks: 1}, "NACK"},
		{TypeState{SentVersion: "2", AckedVersion: "2", Nacks: 1}, "SYNCED"}, // an old NACK, since fixed
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%+v = %s, want %s", tt.s, got, tt.want)
		}
	}
}

func TestProxyStatus(t *testing.T) {
	b, err := os.ReadFile("testdata/connections.json")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ParseConnections(b)
	if err != nil {
		t.Fatal(err)
	}
	proxies := []Proxy{
		{"istio-system", "ztunnel-b"}, // not connected
		{"istio-system", "ztunnel-a"},
		{"default", "waypoint-x"},
	}
	es := MatchProxies(proxies, map[string][]Connection{"istiod-lite-1": cs, "istiod-lite-0": nil})
	for _, format := range []string{printer.Table, printer.JSON} {
		var out bytes.Buffer
		if err := printer.Print(&out, format, ProxyStatusRows(es), es); err != nil {
			t.Fatal(err)
		}
		golden(t, "proxy-status."+format, out.Bytes())
	}
	if _, err := ParseConnections([]byte(`{}`)); err == nil {
		t.Error("object accepted as connections")
	}
}

func TestTimeTolerant(t *testing.T) {
	cs, err := ParseConnections([]byte(`[{"podName": "p", "connectedSince": "", "types": {"x": {"lastPush": null}}}]`))
	if err != nil || !cs[0].ConnectedSince.IsZero() {
		t.Errorf("empty times: %v, %v", cs, err)
	}
	if _, err := ParseConnections([]byte(`[{"connectedSince": "yesterday"}]`)); err == nil {
		t.Error("non-RFC 3339 time accepted")
	}
}
