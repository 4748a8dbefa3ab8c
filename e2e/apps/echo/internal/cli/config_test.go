package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "", want: nil},
		{in: "0", want: nil},
		{in: "9000", want: []int{9000}},
		{in: " 8080, 8081 ,9090", want: []int{8080, 8081, 9090}},
		{in: "abc", wantErr: "1..65535"},
		{in: "80,", wantErr: "1..65535"},
		{in: "70000", wantErr: "1..65535"},
		{in: "0,80", wantErr: "1..65535"},
		{in: "80,80", wantErr: "twice"},
	} {
		got, err := parsePorts("tcp-port", tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "--tcp-port") {
				t.Errorf("parsePorts(%q) error = %v, want one naming --tcp-port and %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestEnvOr(t *testing.T) {
	env := mapEnv(map[string]string{"SET": "7", "EMPTY": ""})
	for _, tc := range []struct{ key, want string }{{"SET", "7"}, {"EMPTY", "def"}, {"UNSET", "def"}} {
		if got := envOr(env, tc.key, "def"); got != tc.want {
			t.Errorf("envOr(%s) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestCheckDistinct(t *testing.T) {
	if err := checkDistinct(map[string][]int{"tcp": {9000}, "http": {8080, 8081}, "grpc": {7070}}); err != nil {
		t.Errorf("distinct ports refused: %v", err)
	}
	err := checkDistinct(map[string][]int{"tcp": {9000}, "http": {8080}, "grpc": {8080}})
	if err == nil || !strings.Contains(err.Error(), "--http-port") || !strings.Contains(err.Error(), "--grpc-port") {
		t.Errorf("shared port error = %v, want one naming --http-port and --grpc-port", err)
	}
}

func mapEnv(m map[string]string) Env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}
