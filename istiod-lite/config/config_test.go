package config

import (
	"io"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	defaults := Config{
		LogLevel: "info", TrustDomain: "cluster.local",
		XDSPort: 15010, XDSTLSPort: 15012, MonitoringPort: 15014, ReadyPort: 8080,
		CASource: "selfsigned", ZtunnelNamespace: "istio-system", ZtunnelServiceAccount: "ztunnel",
		LeaderElect: true, Namespace: "istio-system", WaypointImage: "ambient/waypoint:dev",
	}
	with := func(f func(*Config)) Config { c := defaults; f(&c); return c }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{name: "defaults", want: defaults},
		{
			name: "chart arguments and environment",
			args: []string{"--log-level=debug", "--trust-domain=example.org", "--xds-port=15010", "--xds-tls-port=15012",
				"--monitoring-port=15014", "--ready-port=8080", "--ca-source=cacerts", "--ztunnel-identity=mesh/zt", "--leader-elect=false"},
			env: map[string]string{"POD_NAME": "istiod-lite-0", "POD_NAMESPACE": "mesh", "WAYPOINT_IMAGE": "reg/waypoint:1"},
			want: with(func(c *Config) {
				c.LogLevel, c.TrustDomain, c.CASource = "debug", "example.org", "cacerts"
				c.ZtunnelNamespace, c.ZtunnelServiceAccount, c.LeaderElect = "mesh", "zt", false
				c.PodName, c.Namespace, c.WaypointImage = "istiod-lite-0", "mesh", "reg/waypoint:1"
			}),
		},
		{name: "kubeconfig", args: []string{"--kubeconfig=/tmp/k"}, want: with(func(c *Config) { c.Kubeconfig = "/tmp/k" })},
		{name: "plaintext port disabled", args: []string{"--xds-port=0"}, want: with(func(c *Config) { c.XDSPort = 0 })},
		{name: "bad ca source", args: []string{"--ca-source=vault"}, wantErr: "--ca-source"},
		{name: "bad ztunnel identity", args: []string{"--ztunnel-identity=ztunnel"}, wantErr: "--ztunnel-identity"},
		{name: "ztunnel identity with extra slash", args: []string{"--ztunnel-identity=a/b/c"}, wantErr: "--ztunnel-identity"},
		{name: "bad log level", args: []string{"--log-level=loud"}, wantErr: "--log-level"},
		{name: "bad trust domain", args: []string{"--trust-domain=spiffe://x"}, wantErr: "--trust-domain"},
		{name: "port out of range", args: []string{"--ready-port=70000"}, wantErr: "--ready-port"},
		{name: "duplicate port", args: []string{"--ready-port=15014"}, wantErr: "same port as --monitoring-port"},
		{name: "no grpc port", args: []string{"--xds-port=0", "--xds-tls-port=0"}, wantErr: "enable at least one"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
		{name: "positional argument", args: []string{"serve"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestFieldsCoverEveryField(t *testing.T) {
	n := reflect.TypeFor[Config]().NumField()
	if got := len(Config{}.Fields()); got != n {
		t.Errorf("Fields logs %d values, Config has %d fields: log the new one", got, n)
	}
}
