package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Dumper returns one section of /config_dump. It must be safe for
// concurrent use and return a JSON-marshalable value.
type Dumper func() any

// Admin is the admin endpoint's mux: config_dump sections, log level, pprof.
type Admin struct {
	level   zap.AtomicLevel
	mu      sync.RWMutex
	dumpers map[string]Dumper
}

// New returns an admin mux that changes level on /logging.
func New(level zap.AtomicLevel) *Admin {
	return &Admin{level: level, dumpers: map[string]Dumper{}}
}

// Register adds a /config_dump section (e.g. "workloads", "certificates").
func (a *Admin) Register(section string, d Dumper) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dumpers[section] = d
}

// Handler serves /config_dump, /logging and /debug/pprof/.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", a.configDump)
	mux.HandleFunc("/logging", a.logging)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "admin endpoints: /config_dump[?section=NAME] /logging[?level=debug|info|warn|error] /debug/pprof/")
	})
	return mux
}

// configDump writes every section (or ?section=NAME) as one JSON object.
func (a *Admin) configDump(w http.ResponseWriter, r *http.Request) {
	a.mu.RLock()
	names := make([]string, 0, len(a.dumpers))
	for n := range a.dumpers {
		names = append(names, n)
	}
	sort.Strings(names)
	want := r.URL.Query().Get("section")
	out := map[string]any{}
	for _, n := range names {
		if want == "" || want == n {
			out[n] = a.dumpers[n]()
		}
	}
	a.mu.RUnlock()
	if want != "" && len(out) == 0 {
		http.Error(w, fmt.Sprintf("unknown section %q; sections: %s", want, strings.Join(names, ", ")), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// logging shows the level, or sets it from ?level= (GET or POST, as Envoy and
// ztunnel accept).
func (a *Admin) logging(w http.ResponseWriter, r *http.Request) {
	if lv := r.URL.Query().Get("level"); lv != "" {
		var l zapcore.Level
		if err := l.UnmarshalText([]byte(lv)); err != nil {
			http.Error(w, fmt.Sprintf("bad level %q: want debug, info, warn or error", lv), http.StatusBadRequest)
			return
		}
		a.level.SetLevel(l)
	}
	fmt.Fprintf(w, "current log level is %s\n", a.level.Level())
}

// Metrics serves a Prometheus registry (and the Go/process collectors when
// the registry has them).
func Metrics(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/stats/prometheus", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Ready serves /healthz/ready: 200 when check returns nil, else 503 with the
// reason.
func Ready(check func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := check(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
