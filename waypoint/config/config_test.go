package config

import (
	"errors"
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// deployment is what istiod-lite's waypointctl passes (desired.go).
var deployment = []string{
	"--xds-address=istiod-lite.istio-system.svc:15012",
	"--ca-address=istiod-lite.istio-system.svc:15012",
	"--trust-domain=cluster.local",
	"--name=waypoint",
	"--namespace=ns1",
	"--log-level=info",
	"--token-file=/var/run/secrets/tokens/istio-token",
	"--root-cert=/var/run/secrets/istio/root-cert.pem",
}

var podEnv = map[string]string{
	"POD_NAME": "waypoint-7d9f-abcde", "POD_NAMESPACE": "ns1", "NODE_NAME": "node1",
	"INSTANCE_IP": "10.244.1.7", "SERVICE_ACCOUNT": "waypoint",
}

func TestParseDeployment(t *testing.T) {
	c, err := Parse(deployment, envOf(podEnv), io.Discard)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := c.Identity(), (spiffe.Identity{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "waypoint"}); got != want {
		t.Errorf("Identity = %v, want %v", got, want)
	}
	if got, want := c.NodeID(), "router~10.244.1.7~waypoint-7d9f-abcde.ns1~ns1.svc.cluster.local"; got != want {
		t.Errorf("NodeID = %q, want %q", got, want)
	}
	if got, want := c.ResourcePrefix(), "ns1/waypoint/"; got != want {
		t.Errorf("ResourcePrefix = %q, want %q", got, want)
	}
	md := c.NodeMetadata()
	for k, want := range map[string]string{"NAME": "waypoint-7d9f-abcde", "NAMESPACE": "ns1", "NODE_NAME": "node1", "INSTANCE_IP": "10.244.1.7"} {
		if md[k] != want {
			t.Errorf("NodeMetadata[%s] = %q, want %q", k, md[k], want)
		}
	}
	if !c.UsesXDS() || !c.NeedsRootCert() || Plaintext(c.XDSAddress) {
		t.Errorf("UsesXDS=%v NeedsRootCert=%v Plaintext=%v, want true true false", c.UsesXDS(), c.NeedsRootCert(), Plaintext(c.XDSAddress))
	}
	if c.HBONEPort != 15008 || c.AdminPort != 15000 || c.MetricsPort != 15020 || c.ReadyPort != 15021 {
		t.Errorf("ports = %d %d %d %d, want 15008 15000 15020 15021", c.HBONEPort, c.AdminPort, c.MetricsPort, c.ReadyPort)
	}
	if c.DrainTimeout != 30*time.Second || c.MaxConnections <= 0 || c.MaxRequests <= 0 || c.CA != CAIstiod {
		t.Errorf("defaults: drain %s, max conns %d, max reqs %d, ca %q", c.DrainTimeout, c.MaxConnections, c.MaxRequests, c.CA)
	}
	if got, want := c.Addr(c.HBONEPort), "0.0.0.0:15008"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string // substring; "" = no error
	}{
		{
			name: "local mode defaults name and namespace",
			args: []string{"--local-config=r.yaml", "--ca=local"},
			check: func(t *testing.T, c Config) {
				if c.Identity().String() != "spiffe://cluster.local/ns/default/sa/waypoint" || c.UsesXDS() || c.NeedsRootCert() {
					t.Errorf("identity %s, UsesXDS %v, NeedsRootCert %v", c.Identity(), c.UsesXDS(), c.NeedsRootCert())
				}
				if c.NodeID() != "router~0.0.0.0~waypoint.default~default.svc.cluster.local" {
					t.Errorf("NodeID = %q", c.NodeID())
				}
			},
		},
		{
			name: "service account defaults to the name",
			args: []string{"--xds-address=istiod:15010", "--name=wp", "--namespace=ns2", "--ca=local"},
			check: func(t *testing.T, c Config) {
				if c.ServiceAccount != "wp" || c.PodName != "wp" || c.PodNamespace != "ns2" {
					t.Errorf("sa %q pod %s/%s", c.ServiceAccount, c.PodNamespace, c.PodName)
				}
				if !Plaintext(c.XDSAddress) || c.NeedsRootCert() {
					t.Errorf("15010 should be plaintext without root cert")
				}
			},
		},
		{
			name: "namespace from POD_NAMESPACE, SERVICE_ACCOUNT wins",
			args: []string{"--xds-address=istiod:15012", "--name=wp"},
			env:  map[string]string{"POD_NAMESPACE": "ns3", "SERVICE_ACCOUNT": "other"},
			check: func(t *testing.T, c Config) {
				if c.Identity().String() != "spiffe://cluster.local/ns/ns3/sa/other" || c.CAAddress != "istiod:15012" {
					t.Errorf("identity %s ca %s", c.Identity(), c.CAAddress)
				}
			},
		},
		{
			name:    "plaintext xDS but TLS CA needs the root cert",
			args:    []string{"--xds-address=istiod:15010", "--ca-address=istiod:15012", "--name=wp", "--namespace=ns", "--root-cert="},
			wantErr: "--root-cert is empty",
		},
		{
			name: "ports and limits",
			args: []string{"--local-config=r.yaml", "--ca=local", "--bind-address=127.0.0.1", "--hbone-port=0", "--admin-port=1", "--metrics-port=2", "--ready-port=3",
				"--drain-timeout=1s", "--max-connections=5", "--max-requests=6"},
			check: func(t *testing.T, c Config) {
				if c.Addr(c.AdminPort) != "127.0.0.1:1" || c.HBONEPort != 0 || c.MaxConnections != 5 || c.MaxRequests != 6 || c.DrainTimeout != time.Second {
					t.Errorf("got %+v", c)
				}
			},
		},
		{name: "local config needs a CA", args: []string{"--local-config=r.yaml"}, wantErr: "--ca-address is empty"},
		{name: "no source", args: []string{"--name=wp", "--namespace=ns"}, wantErr: "--xds-address is empty"},
		{name: "two sources", args: []string{"--local-config=r.yaml", "--xds-address=istiod:15010"}, wantErr: "choose one"},
		{name: "no name", args: []string{"--xds-address=istiod:15010", "--namespace=ns"}, wantErr: "--name is empty"},
		{name: "no namespace", args: []string{"--xds-address=istiod:15010", "--name=wp"}, wantErr: "--namespace is empty"},
		{name: "slash in name", args: []string{"--local-config=r.yaml", "--name=a/b"}, wantErr: "must not contain"},
		{name: "bad ca", args: []string{"--local-config=r.yaml", "--ca=vault"}, wantErr: "--ca=\"vault\""},
		{name: "bad xds address", args: []string{"--xds-address=istiod", "--name=wp", "--namespace=ns", "--ca=local"}, wantErr: "--xds-address"},
		{name: "bad log level", args: []string{"--local-config=r.yaml", "--log-level=loud"}, wantErr: "--log-level"},
		{name: "port too big", args: []string{"--local-config=r.yaml", "--hbone-port=70000"}, wantErr: "--hbone-port=70000"},
		{name: "duplicate ports", args: []string{"--local-config=r.yaml", "--admin-port=15020"}, wantErr: "--metrics-port are both 15020"},
		{name: "negative drain", args: []string{"--local-config=r.yaml", "--drain-timeout=-1s"}, wantErr: "--drain-timeout"},
		{name: "zero max connections", args: []string{"--local-config=r.yaml", "--max-connections=0"}, wantErr: "--max-connections"},
		{name: "zero max requests", args: []string{"--local-config=r.yaml", "--max-requests=0"}, wantErr: "--max-requests"},
		{name: "bad bind address", args: []string{"--local-config=r.yaml", "--bind-address=localhost"}, wantErr: "--bind-address"},
		{name: "bad INSTANCE_IP", args: []string{"--local-config=r.yaml"}, env: map[string]string{"INSTANCE_IP": "x"}, wantErr: "INSTANCE_IP"},
		{name: "stray argument", args: []string{"--local-config=r.yaml", "extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args, envOf(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	var out strings.Builder
	_, err := Parse([]string{"--help"}, envOf(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"--xds-address", "-local-config", "-drain-timeout", "-max-requests"} {
		if !strings.Contains(out.String(), strings.TrimPrefix(f, "-")) {
			t.Errorf("usage lacks %s", f)
		}
	}
}

func TestInstanceIPUnmapped(t *testing.T) {
	c, err := Parse([]string{"--local-config=r.yaml", "--ca=local"}, envOf(map[string]string{"INSTANCE_IP": "::ffff:10.0.0.1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceIP != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("InstanceIP = %v, want 10.0.0.1", c.InstanceIP)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
