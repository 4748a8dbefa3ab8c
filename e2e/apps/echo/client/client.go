package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Options configure Run.
type Options struct {
	// Target is a URL-ish target, see ParseTarget.
	Target string
	// Count is the number of requests (default 1).
	Count int
	// Concurrency bounds requests in flight (default 1).
	Concurrency int
	// QPS paces request starts; 0 sends as fast as possible.
	QPS float64
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
	// Headers are sent with HTTP requests and as gRPC metadata. A Host
	// header sets the HTTP host / :authority.
	Headers http.Header
	// Method is the HTTP method (default GET).
	Method string
	// BodySize is the request body (HTTP), payload (tcp) or "payload"
	// field (gRPC) size in bytes. tcp sends "ping\n" when 0.
	BodySize int
	// KeepAlive reuses connections between HTTP and gRPC requests.
	KeepAlive bool
	// NewConn forces a new connection per request (overrides KeepAlive).
	NewConn bool
	// ClientCert is presented on https targets (optional). The server's
	// certificate is not verified: this is a test client.
	ClientCert *tls.Certificate
	// Stream (grpc targets only) makes each request one EchoStream call
	// exchanging Stream messages one at a time (send one, receive its
	// answer); it succeeds when every answer arrives in order. 0 calls the
	// unary Echo.
	Stream int
}

// doer sends one request.
type doer interface {
	do(ctx context.Context) outcome
	close()
}

// Run sends the requests and sums the outcomes up. It returns an error only
// for bad options; failed requests are counted in the Result.
func Run(ctx context.Context, o Options) (Result, error) {
	t, err := ParseTarget(o.Target)
	if err != nil {
		return Result{}, err
	}
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.QPS < 0 {
		return Result{}, fmt.Errorf("qps %v: want 0 (as fast as possible) or a positive rate", o.QPS)
	}
	if o.BodySize < 0 {
		return Result{}, fmt.Errorf("body size %d: want 0 or more bytes", o.BodySize)
	}
	if o.Stream < 0 || o.Stream > 0 && t.Scheme != SchemeGRPC {
		return Result{}, fmt.Errorf("stream %d: want 0, or a message count with a grpc:// target", o.Stream)
	}
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	var d doer
	switch t.Scheme {
	case SchemeTCP:
		d = &tcpDoer{addr: t.Addr, payload: tcpPayload(o.BodySize), timeout: o.Timeout}
	case SchemeGRPC:
		d, err = newGRPCDoer(t, o)
	default:
		d, err = newHTTPDoer(t, o)
	}
	if err != nil {
		return Result{}, err
	}
	defer d.close()

	outs := make([]outcome, 0, o.Count)
	var mu sync.Mutex
	jobs := make(chan struct{})
	go schedule(ctx, jobs, o.Count, o.QPS)
	var wg sync.WaitGroup
	for range min(o.Concurrency, o.Count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				rctx, cancel := context.WithTimeout(ctx, o.Timeout)
				start := time.Now()
				out := d.do(rctx)
				out.latency = time.Since(start)
				cancel()
				mu.Lock()
				outs = append(outs, out)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return aggregate(o.Target, outs), nil
}

// schedule hands out n jobs, paced at qps when qps > 0, and closes jobs;
// it stops early when ctx ends.
func schedule(ctx context.Context, jobs chan<- struct{}, n int, qps float64) {
	defer close(jobs)
	start := time.Now()
	for i := range n {
		if qps > 0 {
			next := start.Add(time.Duration(float64(i) / qps * float64(time.Second)))
			if wait := time.Until(next); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
			return
		}
	}
}
