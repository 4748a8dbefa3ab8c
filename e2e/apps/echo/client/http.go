package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// httpDoer sends HTTP/1.1 (http), h2c with prior knowledge (h2c) or
// HTTP over TLS with ALPN (https) requests.
type httpDoer struct {
	url    string
	scheme string
	o      Options
	shared *http.Transport // nil: a new transport (connection) per request
	// sampled is set once an answer's body gave the headers the server saw.
	sampled atomic.Bool
}

// maxSampleBody bounds the body decoded for Result.SeenHeaders.
const maxSampleBody = 1 << 20

func newHTTPDoer(t Target, o Options) (*httpDoer, error) {
	scheme := "http"
	if t.Scheme == SchemeHTTPS {
		scheme = "https"
	}
	d := &httpDoer{url: scheme + "://" + t.Addr + t.Path, scheme: t.Scheme, o: o}
	if _, err := http.NewRequest(o.Method, d.url, nil); err != nil {
		return nil, fmt.Errorf("target %q: %w", o.Target, err)
	}
	if o.KeepAlive && !o.NewConn {
		d.shared = d.transport(d.scheme)
	}
	return d, nil
}

func (d *httpDoer) transport(scheme string) *http.Transport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: max(d.o.Concurrency, 2),
		DisableKeepAlives:   !d.o.KeepAlive || d.o.NewConn,
	}
	switch scheme {
	case SchemeH2C:
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	case SchemeHTTPS:
		// A test client: the server's (self-signed) certificate is not checked.
		tc := &tls.Config{InsecureSkipVerify: true}
		if d.o.ClientCert != nil {
			tc.Certificates = []tls.Certificate{*d.o.ClientCert}
		}
		tr.TLSClientConfig = tc
		tr.ForceAttemptHTTP2 = true
	}
	return tr
}

func (d *httpDoer) close() {
	if d.shared != nil {
		d.shared.CloseIdleConnections()
	}
}

func (d *httpDoer) do(ctx context.Context) outcome {
	tr := d.shared
	if tr == nil {
		tr = d.transport(d.scheme)
		defer tr.CloseIdleConnections()
	}
	var body io.Reader
	if d.o.BodySize > 0 {
		body = bytes.NewReader(bytes.Repeat([]byte("x"), d.o.BodySize))
	}
	req, err := http.NewRequestWithContext(ctx, d.o.Method, d.url, body)
	if err != nil {
		return outcome{err: err}
	}
	for k, vs := range d.o.Headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	var seen map[string]string
	if ok && !d.sampled.Load() {
		// One answer's body tells which headers reached the server.
		var r api.HTTPResponse
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxSampleBody))
		if err != nil {
			return outcome{err: fmt.Errorf("read body after %s: %w", resp.Status, err)}
		}
		if json.Unmarshal(b, &r) == nil && r.Headers != nil && d.sampled.CompareAndSwap(false, true) {
			seen = r.Headers
		}
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return outcome{err: fmt.Errorf("read body after %s: %w", resp.Status, err)}
	}
	return outcome{
		responded: true,
		ok:        ok,
		code:      httpCode(resp.StatusCode),
		pod:       resp.Header.Get(api.HeaderPod),
		version:   resp.Header.Get(api.HeaderVersion),
		seen:      seen,
	}
}
