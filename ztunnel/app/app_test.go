package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/ztunnel/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestProxyLocalMode runs the proxy role without Kubernetes (local config,
// local CA, no capture) and checks readiness, the admin sections and a clean
// shutdown.
func TestProxyLocalMode(t *testing.T) {
	cfg, err := config.Parse([]string{"--local-config=../state/testdata/local.yaml", "--ca=local", "--capture=false",
		"--outbound-addr=" + freeAddr(t), "--inbound-addr=" + freeAddr(t), "--inbound-plaintext-addr=" + freeAddr(t),
		"--admin-addr=" + freeAddr(t), "--metrics-addr=" + freeAddr(t), "--ready-addr=" + freeAddr(t),
		"--drain-timeout=1s", "--node=node-a"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, zap.NewNop(), zap.NewAtomicLevel()) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()

	get := func(addr, path string) (int, string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := get(cfg.ReadyAddr, "/healthz/ready")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %d %s %v", code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body, err := get(cfg.AdminAddr, "/config_dump")
	if err != nil || code != 200 {
		t.Fatalf("config_dump: %d %v", code, err)
	}
	var dump map[string][]map[string]any
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("config_dump is not sections of arrays: %v\n%s", err, body)
	}
	for _, s := range []string{"workloads", "services", "policies", "certificates", "connections"} {
		if _, ok := dump[s]; !ok {
			t.Errorf("config_dump lacks section %q", s)
		}
	}
	if len(dump["workloads"]) == 0 || len(dump["services"]) == 0 {
		t.Errorf("local config not loaded: %d workloads, %d services", len(dump["workloads"]), len(dump["services"]))
	}
	if w := dump["workloads"][0]; w["protocol"] == "" || w["identity"] == "" || !strings.HasPrefix(fmt.Sprint(w["identity"]), "spiffe://") {
		t.Errorf("workload view %v lacks protocol/identity", w)
	}
	if code, body, _ := get(cfg.MetricsAddr, "/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics: %d", code)
	}
}

func TestTitleEnum(t *testing.T) {
	for in, want := range map[string]string{"ALLOW": "Allow", "WORKLOAD_SELECTOR": "WorkloadSelector", "available": "Available", "": ""} {
		if got := titleEnum(in); got != want {
			t.Errorf("titleEnum(%q) = %q, want %q", in, got, want)
		}
	}
}
