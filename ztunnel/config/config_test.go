package config

import (
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults from env", args: []string{"--role=proxy"}, env: map[string]string{"NODE_NAME": "node1", "INSTANCE_IP": "172.30.0.11"},
			check: func(t *testing.T, c Config) {
				if c.Node != "node1" || c.NodeIP.String() != "172.30.0.11" || c.CAAddress != c.XDSAddress || c.TrustDomain != "cluster.local" {
					t.Errorf("config %+v", c)
				}
			}},
		{name: "capture needs node", args: []string{"--role=capture"}, wantErr: "--node is empty"},
		{name: "capture uninstall without node", args: []string{"--role=capture", "--uninstall"}},
		{name: "bad role", args: []string{"--role=sidecar"}, wantErr: `--role="sidecar"`},
		{name: "bad ca", args: []string{"--ca=vault"}, wantErr: "--ca="},
		{name: "bad node ip", args: []string{"--node-ip=x"}, wantErr: "--node-ip"},
		{name: "ca cert without key", args: []string{"--ca=local", "--ca-cert=ca.pem"}, wantErr: "go together"},
		{name: "ca files need local ca", args: []string{"--ca-cert=ca.pem", "--ca-key=ca.key"}, wantErr: "need --ca=local"},
		{name: "shared local ca", args: []string{"--ca=local", "--ca-cert=ca.pem", "--ca-key=ca.key", "--local-config=l.yaml"},
			check: func(t *testing.T, c Config) {
				if c.CACertFile != "ca.pem" || c.CAKeyFile != "ca.key" {
					t.Errorf("config %+v", c)
				}
			}},
		{name: "stray args", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "explicit ca address", args: []string{"--xds-address=a:15010", "--ca-address=b:15012"},
			check: func(t *testing.T, c Config) {
				if c.CAAddress != "b:15012" || !Plaintext(c.XDSAddress) || Plaintext(c.CAAddress) {
					t.Errorf("config %+v", c)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
