package printer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPrint(t *testing.T) {
	rows := Rows{Header: []string{"NAME", "VALUE"}, Rows: [][]string{{"a", "1"}, {"longer-name", ""}}}
	raw := json.RawMessage(`{"b":[1,2],"a":"x"}`)
	tests := []struct {
		format, want, wantErr string
	}{
		{format: Table, want: "NAME          VALUE\na             1\nlonger-name   -\n"},
		{format: JSON, want: "{\n  \"a\": \"x\",\n  \"b\": [\n    1,\n    2\n  ]\n}\n"},
		{format: YAML, want: "a: x\nb:\n- 1\n- 2\n"},
		{format: "xml", wantErr: `unknown output format "xml": use -o table|json|yaml`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			err := Print(&b, tt.format, rows, raw)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestPrintStructAndBadRaw(t *testing.T) {
	var b bytes.Buffer
	if err := Print(&b, JSON, Rows{}, struct {
		N int `json:"n"`
	}{3}); err != nil || b.String() != "{\n  \"n\": 3\n}\n" {
		t.Errorf("struct: %q, %v", b.String(), err)
	}
	err := Print(&b, JSON, Rows{}, json.RawMessage(`{not json`))
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("bad raw: err = %v", err)
	}
}
