package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
	"github.com/ambient-mesh/ambient/e2e/apps/echo/internal/knobs"
)

// handler answers HTTP requests with an api.HTTPResponse.
type handler struct {
	id  api.Identity
	log *zap.Logger
	// sleep waits d or until ctx ends; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
	// rand draws from [0, 1) for the fail knob; replaced in tests.
	rand func() float64
	// failEvery counts the requests carrying the fail-every knob; shared
	// with the gRPC service so the count is per server.
	failEvery *atomic.Uint64
}

// NewHandler returns the HTTP handler of an echo server with identity id
// (HTTP/1.1 and HTTP/2 alike; h2c is added by Run).
func NewHandler(id api.Identity, log *zap.Logger) http.Handler {
	return newHandler(id, log, new(atomic.Uint64))
}

func newHandler(id api.Identity, log *zap.Logger, failEvery *atomic.Uint64) *handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &handler{id: id, log: log, sleep: sleepCtx, rand: rand.Float64, failEvery: failEvery}
}

// failsEvery counts a request asking for fail-every and tells whether it
// fails.
func failsEvery(counter *atomic.Uint64, k knobs.Knobs) bool {
	return k.FailEvery > 0 && knobs.ShouldFailEvery(k.FailEvery, counter.Add(1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderPod, h.id.Pod)
	w.Header().Set(api.HeaderVersion, h.id.Version)
	if r.URL.Path == api.HealthPath {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	k, err := knobs.Parse(r.URL.Query(), r.Header)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		h.log.Debug("read request body failed", zap.Error(err))
	}
	if k.Delay > 0 {
		if err := h.sleep(r.Context(), k.Delay); err != nil {
			return // client gone
		}
	}
	code := http.StatusOK
	if k.Status != 0 {
		code = k.Status
	}
	if k.Fail > 0 && knobs.ShouldFail(k.Fail, h.rand()) || failsEvery(h.failEvery, k) {
		code = http.StatusServiceUnavailable
	}
	resp := h.response(r, n, code)
	body, err := encodePadded(resp, k.Size)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if _, err := w.Write(body); err != nil {
		h.log.Debug("write response failed", zap.Error(err))
	}
	h.log.Debug("http request",
		zap.String("proto", r.Proto), zap.String("method", r.Method),
		zap.String("path", r.URL.Path), zap.String("src", r.RemoteAddr), zap.Int("code", code))
}

func (h *handler) response(r *http.Request, bodyBytes int64, code int) api.HTTPResponse {
	srcIP, srcPort := splitAddr(r.RemoteAddr)
	var local net.Addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a
	}
	headers := make(map[string]string, len(r.Header))
	for k, vs := range r.Header {
		headers[k] = strings.Join(vs, ", ")
	}
	resp := api.HTTPResponse{
		Identity:   h.id,
		ServerPort: addrPort(local),
		Protocol:   r.Proto,
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		SourceIP:   srcIP,
		SourcePort: srcPort,
		Headers:    headers,
		BodyBytes:  bodyBytes,
		Code:       code,
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		resp.TLSPeer = uriSANs(r.TLS.PeerCertificates[0])
	}
	return resp
}

func uriSANs(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.URIs))
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// encodePadded encodes resp as one JSON line of at least size bytes,
// growing its padding field.
func encodePadded(resp api.HTTPResponse, size int) ([]byte, error) {
	resp.Padding = ""
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	b = append(b, '\n')
	if len(b) >= size {
		return b, nil
	}
	resp.Padding = strings.Repeat("x", size-len(b))
	b, err = json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return append(b, '\n'), nil
}
