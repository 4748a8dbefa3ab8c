package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"
)

type options struct {
	url      string
	conns    int
	rate     float64
	duration time.Duration
	size     int
	max      bool
	timeout  time.Duration
	warmup   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "URL to GET (http only)")
	flag.IntVar(&o.conns, "conns", 4, "keep-alive connections")
	flag.Float64Var(&o.rate, "rate", 1000, "requests per second in total (open loop; ignored with -max)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	flag.IntVar(&o.size, "size", 0, "expected response body size in bytes (0: not checked)")
	flag.BoolVar(&o.max, "max", false, "closed loop: each connection sends back to back; reports the maximum rate")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout")
	flag.DurationVar(&o.warmup, "warmup", 0, "send closed-loop for this long before measuring (opens the connections)")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	r, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Println(r.Line())
}

func (o options) validate() error {
	switch {
	case o.url == "":
		return errors.New("-url is required")
	case o.conns < 1:
		return errors.New("-conns must be at least 1")
	case !o.max && o.rate <= 0:
		return errors.New("-rate must be positive (or use -max)")
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	}
	return nil
}

// worker is one keep-alive connection (its own transport, so conns
// connections are used whatever the load).
type worker struct {
	client *http.Client
	req    *http.Request
	size   int
}

func newWorker(o options) (*worker, error) {
	req, err := http.NewRequest(http.MethodGet, o.url, nil)
	if err != nil {
		return nil, fmt.Errorf("request for %s: %w", o.url, err)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: o.timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
	}
	return &worker{client: &http.Client{Transport: tr, Timeout: o.timeout}, req: req, size: o.size}, nil
}

// do sends one request and reads the whole response.
func (w *worker) do() error {
	resp, err := w.client.Do(w.req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case w.size > 0 && n != int64(w.size):
		return fmt.Errorf("body %d bytes, want %d", n, w.size)
	}
	return nil
}

func (w *worker) close() { w.client.CloseIdleConnections() }

// tally collects the results of the workers.
type tally struct {
	mu  sync.Mutex
	res Result
	err error // first error, for the message
}

func (t *tally) add(lat time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.res.Errors++
		if t.err == nil {
			t.err = err
		}
		return
	}
	t.res.Requests++
	t.res.Latencies = append(t.res.Latencies, lat)
}

func run(ctx context.Context, o options) (Result, error) {
	workers := make([]*worker, o.conns)
	for i := range workers {
		w, err := newWorker(o)
		if err != nil {
			return Result{}, err
		}
		defer w.close()
		workers[i] = w
	}
	if o.warmup > 0 {
		closedLoop(workers, o.warmup, &tally{})
	}
	t := &tally{}
	start := time.Now()
	if o.max {
		closedLoop(workers, o.duration, t)
	} else {
		openLoop(ctx, workers, Schedule{Start: start, Rate: o.rate, Duration: o.duration}, t)
	}
	// Until the last answer: an open-loop run the server cannot keep up with
	// shows a rate below -rate.
	t.res.Elapsed = time.Since(start)
	if t.err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %d errors, first: %v\n", t.res.Errors, t.err)
	}
	return t.res, nil
}

// closedLoop runs every worker back to back until d has passed.
func closedLoop(workers []*worker, d time.Duration, t *tally) {
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				begin := time.Now()
				err := w.do()
				t.add(time.Since(begin), err)
			}
		}()
	}
	wg.Wait()
}

// openLoop releases the requests of s when they are due; an idle worker
// takes the next one and its latency is counted from the due time.
func openLoop(ctx context.Context, workers []*worker, s Schedule, t *tally) {
	due := make(chan time.Time, s.Count())
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				err := w.do()
				t.add(time.Since(at), err)
			}
		}()
	}
	// The pacer keeps its thread, so its sleeps are precise (sleepPrecise).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sent, total := 0, s.Count()
	for sent < total && ctx.Err() == nil {
		for n := s.DueBy(time.Now()); sent < n; sent++ {
			due <- s.Due(sent)
		}
		if sent < total {
			if wait := time.Until(s.Due(sent)); wait > 0 {
				sleepPrecise(wait)
			}
		}
	}
	close(due)
	wg.Wait()
}
