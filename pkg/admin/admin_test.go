package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func get(t *testing.T, h http.Handler, url string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestConfigDump(t *testing.T) {
	a := New(zap.NewAtomicLevel())
	a.Register("workloads", func() any { return []string{"a", "b"} })
	a.Register("certificates", func() any { return map[string]int{"n": 1} })
	h := a.Handler()

	code, body := get(t, h, "/config_dump")
	if code != 200 {
		t.Fatalf("code %d", code)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || string(all["workloads"]) == "" {
		t.Fatalf("dump = %s", body)
	}
	code, body = get(t, h, "/config_dump?section=workloads")
	if code != 200 || strings.Contains(body, "certificates") || !strings.Contains(body, `"a"`) {
		t.Fatalf("section dump %d: %s", code, body)
	}
	code, body = get(t, h, "/config_dump?section=nope")
	if code != http.StatusNotFound || !strings.Contains(body, "certificates, workloads") {
		t.Fatalf("unknown section %d: %s", code, body)
	}
}

func TestLogging(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	h := New(lvl).Handler()
	if code, body := get(t, h, "/logging?level=debug"); code != 200 || !strings.Contains(body, "debug") {
		t.Fatalf("set debug: %d %s", code, body)
	}
	if lvl.Level() != zapcore.DebugLevel {
		t.Fatalf("level = %s, want debug", lvl.Level())
	}
	if code, _ := get(t, h, "/logging?level=loud"); code != http.StatusBadRequest {
		t.Fatalf("bad level accepted: %d", code)
	}
	if lvl.Level() != zapcore.DebugLevel {
		t.Fatal("bad level changed the level")
	}
}

func TestReadyAndMetrics(t *testing.T) {
	var err error = errors.New("no xDS yet")
	h := Ready(func() error { return err })
	if code, body := get(t, h, "/healthz/ready"); code != 503 || !strings.Contains(body, "no xDS yet") {
		t.Fatalf("not ready: %d %s", code, body)
	}
	err = nil
	if code, _ := get(t, h, "/healthz/ready"); code != 200 {
		t.Fatalf("ready: %d", code)
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "istio_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	if code, body := get(t, Metrics(reg), "/metrics"); code != 200 || !strings.Contains(body, "istio_test_total 1") {
		t.Fatalf("metrics: %d %s", code, body)
	}
}
