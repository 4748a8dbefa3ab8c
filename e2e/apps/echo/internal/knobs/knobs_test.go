package knobs

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		query   string
		header  http.Header
		want    Knobs
		wantErr string
	}{
		{name: "none", want: Knobs{}},
		{name: "status query", query: "status=503", want: Knobs{Status: 503}},
		{name: "status header", header: http.Header{"X-Echo-Status": {"404"}}, want: Knobs{Status: 404}},
		{name: "query wins over header", query: "status=500", header: http.Header{"X-Echo-Status": {"404"}}, want: Knobs{Status: 500}},
		{name: "grpc metadata lower-case", header: http.Header{"x-echo-delay": {"1s"}}, want: Knobs{Delay: time.Second}},
		{name: "delay", query: "delay=250ms", want: Knobs{Delay: 250 * time.Millisecond}},
		{name: "fail", query: "fail=0.5", want: Knobs{Fail: 0.5}},
		{name: "size", query: "size=1024", want: Knobs{Size: 1024}},
		{name: "fail every", query: "fail-every=2", want: Knobs{FailEvery: 2}},
		{name: "fail every header", header: http.Header{"X-Echo-Fail-Every": {"3"}}, want: Knobs{FailEvery: 3}},
		{name: "grpc code zero is asked", header: http.Header{"X-Echo-Grpc-Code": {"0"}}, want: Knobs{HasGRPCCode: true}},
		{name: "grpc code", query: "grpc-code=14", want: Knobs{GRPCCode: 14, HasGRPCCode: true}},
		{name: "all", query: "status=201&delay=2s&fail=1&size=10", want: Knobs{Status: 201, Delay: 2 * time.Second, Fail: 1, Size: 10}},
		{name: "status not a number", query: "status=abc", wantErr: "status"},
		{name: "status 1xx", query: "status=101", wantErr: "200..599"},
		{name: "status too big", query: "status=600", wantErr: "200..599"},
		{name: "delay no unit", query: "delay=2", wantErr: "delay"},
		{name: "delay negative", query: "delay=-1s", wantErr: "delay"},
		{name: "delay too long", query: "delay=1h", wantErr: "at most"},
		{name: "fail above one", query: "fail=1.5", wantErr: "fail"},
		{name: "fail negative", header: http.Header{"X-Echo-Fail": {"-0.1"}}, wantErr: "fail"},
		{name: "size negative", query: "size=-1", wantErr: "size"},
		{name: "fail every zero", query: "fail-every=0", wantErr: "fail-every"},
		{name: "fail every too big", query: "fail-every=1001", wantErr: "1..1000"},
		{name: "size too big", query: "size=999999999", wantErr: "size"},
		{name: "grpc code too big", query: "grpc-code=17", wantErr: "grpc-code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(q, tc.header)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tc.want {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestShouldFail(t *testing.T) {
	for _, tc := range []struct {
		p, r float64
		want bool
	}{
		{0, 0, false},
		{0, 0.99, false},
		{1, 0, true},
		{1, 0.9999, true},
		{0.5, 0.49, true},
		{0.5, 0.5, false},
	} {
		if got := ShouldFail(tc.p, tc.r); got != tc.want {
			t.Errorf("ShouldFail(%v, %v) = %v, want %v", tc.p, tc.r, got, tc.want)
		}
	}
}

func TestShouldFailEvery(t *testing.T) {
	for _, tc := range []struct {
		every int
		n     uint64
		want  bool
	}{
		{0, 1, false},
		{1, 1, true},
		{1, 7, true},
		{2, 0, false},
		{2, 1, true},
		{2, 2, false},
		{2, 3, true},
		{2, 4, false},
		{3, 4, true},
		{3, 5, false},
	} {
		if got := ShouldFailEvery(tc.every, tc.n); got != tc.want {
			t.Errorf("ShouldFailEvery(%d, %d) = %v, want %v", tc.every, tc.n, got, tc.want)
		}
	}
}
