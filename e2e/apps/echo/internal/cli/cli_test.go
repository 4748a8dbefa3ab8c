package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/client"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/server"
)

func runMain(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, client.Result, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, args, mapEnv(env), &stdout, &stderr)
	var r client.Result
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("stdout is not one JSON result: %q: %v", stdout.String(), err)
		}
	}
	return code, r, stderr.String()
}

func freeAddr(t *testing.T) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().String(), func() { l.Close() }
}

func TestClientAgainstServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	id := api.Identity{Pod: "cli-pod", Version: "v7"}
	go func() {
		done <- server.Run(ctx, server.Config{Identity: id, Logger: zaptest.NewLogger(t)}, server.Listeners{HTTP: []net.Listener{l}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	code, r, stderr := runMain(t, context.Background(), nil, "client", "--target", "http://"+l.Addr().String()+"/p?status=202",
		"--count", "4", "--concurrency", "2", "-H", "x-echo-delay: 1ms", "--method", "POST", "--body-size", "10")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if r.Total != 4 || r.OK != 4 || r.ByCode["202"] != 4 || r.ByResponder["cli-pod"] != 4 || r.ByVersion["v7"] != 4 {
		t.Errorf("result %+v, want 4 answers 202 from cli-pod v7", r)
	}
}

func TestClientExitCodes(t *testing.T) {
	addr, closeL := freeAddr(t)
	closeL() // nothing listens there now
	code, r, _ := runMain(t, context.Background(), nil, "client", "--target", "tcp://"+addr, "--count", "2")
	if code != ExitFailed || r.Errors != 2 {
		t.Errorf("closed port: exit %d errors %d, want %d and 2", code, r.Errors, ExitFailed)
	}
	code, r, _ = runMain(t, context.Background(), nil, "client", "--target", "tcp://"+addr, "--allow-errors")
	if code != ExitOK || r.Errors != 1 {
		t.Errorf("closed port with --allow-errors: exit %d errors %d, want 0 and 1", code, r.Errors)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--tcp-port", "abc"},
		{"server", "--http-port", "9000", "--tcp-port", "9000"},
		{"server", "--tls-cert", "x.pem"},
		{"server", "--log-level", "loud", "--tcp-port", "0", "--http-port", "0", "--grpc-port", "0", "--tls-port", "1"},
		{"server", "extra-arg"},
		{"server", "--tcp-port", "0", "--http-port", "0", "--grpc-port", "0"},
		{"nosuchcommand"},
		{"client"},
		{"client", "--target", "ftp://x:1"},
		{"client", "--target", "http://x:1", "--count", "many"},
		{"client", "--target", "http://x:1", "-H", "no-colon"},
	} {
		code, _, stderr := runMain(t, context.Background(), nil, args...)
		if code != ExitUsage || stderr == "" {
			t.Errorf("%q: exit %d stderr %q, want %d and a message", args, code, stderr, ExitUsage)
		}
	}
}

// TestServerCommand runs "echo server" on free loopback ports, talks to it
// and stops it by ending its context (as SIGTERM does in main).
func TestServerCommand(t *testing.T) {
	tcpAddr, closeTCP := freeAddr(t)
	httpAddr, closeHTTP := freeAddr(t)
	closeTCP()
	closeHTTP()
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	env := map[string]string{api.EnvPodName: "from-env", api.EnvVersion: "v-env", api.EnvPodNamespace: "ns1"}
	go func() {
		var out, errb bytes.Buffer
		done <- Main(ctx, []string{"server", "--listen-address", "127.0.0.1", "--tcp-port", port(tcpAddr),
			"--http-port", port(httpAddr), "--grpc-port", "0", "--version-label", "v-flag", "--log-level", "warn"}, mapEnv(env), &out, &errb)
	}()
	// Wait until the server listens (bounded so a broken server fails
	// the test instead of hanging it).
	var r client.Result
	for i := 0; ; i++ {
		var err error
		r, err = client.Run(ctx, client.Options{Target: "http://" + httpAddr + "/", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Responses == 1 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("server exited with %d before answering", code)
		default:
		}
		if i > 200 {
			t.Fatalf("server never answered: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.ByResponder["from-env"] != 1 || r.ByVersion["v-flag"] != 1 {
		t.Errorf("answer %+v, want pod from-env and version v-flag (flag wins over env)", r)
	}
	r, err := client.Run(ctx, client.Options{Target: "tcp://" + tcpAddr, Count: 2})
	if err != nil || r.OK != 2 {
		t.Errorf("tcp: %+v, %v; want 2 ok", r, err)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("server exit %d after its context ended, want 0", code)
	}
	if _, err := net.Dial("tcp", httpAddr); err == nil {
		t.Errorf("server still listens on %s after stopping", httpAddr)
	}
}
