package listener

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/waypoint/filter"
	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/upstream"
)

// exchange is one request in progress and what the access log and metrics
// report about it.
type exchange struct {
	l     *Listener
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context // ends when the client goes away
	t     *tunnel
	start time.Time
	grpc  bool
	body  *countingBody

	plan         Plan
	code         int
	flags        string
	grpcStatus   string
	respBytes    int64
	endpoint     *state.Endpoint
	attempts     int
	upstreamTime time.Duration
	requestID    string
	finished     bool
}

// ServeHTTP handles one request that arrived through a tunnel.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := tunnelFrom(r.Context())
	if t == nil {
		http.Error(w, "request did not arrive through an HBONE tunnel", http.StatusInternalServerError)
		return
	}
	l.serve(r.Context(), w, r, t)
}

// serve handles one request of tunnel t; ctx ends when the client goes
// away (r.Context() is not used: the lean HTTP/1.1 path does not set it).
func (l *Listener) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, t *tunnel) {
	ex := &exchange{l: l, w: w, r: r, ctx: ctx, t: t, start: time.Now(), grpc: filter.IsGRPC(r.Header.Get("Content-Type")), flags: "-"}
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = &countingBody{rc: r.Body}
		r.Body = ex.body
	}
	defer ex.finish()
	if n := l.reqs.Add(1); n > int64(l.cfg.MaxRequests) {
		l.reqs.Add(-1)
		w.Header().Set(filter.HeaderOverloaded, "true")
		ex.reply(http.StatusServiceUnavailable, BodyOverloaded, "UO", nil, "")
		return
	}
	defer l.reqs.Add(-1)

	snap := l.cfg.State()
	chain := snap.Chain(uint32(t.authority.Port()))
	if chain == nil {
		chain = t.chain // the port stopped being HTTP while this tunnel was open
	}
	in := Input{
		Route:     router.RequestInfo{Host: r.Host, Method: r.Method, Path: r.URL.Path, Headers: r.Header},
		Authority: t.authority,
		Authz: authz.Request{Method: r.Method, Host: r.Host, Path: r.RequestURI, Headers: r.Header,
			DestinationPort: uint32(t.authority.Port()), Peer: t.peer, PeerURI: t.peerURI},
		RawQuery: r.URL.RawQuery,
	}
	if in.Authz.Path == "" {
		in.Authz.Path = r.URL.RequestURI()
	}
	if r.URL.RawQuery != "" {
		in.Route.Query = r.URL.Query()
	}
	var ids [24]byte
	l.random(func(rnd *rand.Rand) {
		ex.plan = Decide(snap, chain, in, rnd)
		binary.LittleEndian.PutUint64(ids[0:], rnd.Uint64())
		binary.LittleEndian.PutUint64(ids[8:], rnd.Uint64())
		binary.LittleEndian.PutUint64(ids[16:], rnd.Uint64())
	})
	p := &ex.plan
	ex.flags = p.Flags
	if p.Delay > 0 {
		tm := time.NewTimer(p.Delay)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			ex.code, ex.flags = 0, "DC"
			return
		}
	}
	if p.Status != 0 {
		ex.reply(p.Status, p.Body, p.Flags, p.Route, p.Location)
		return
	}
	ex.forward([16]byte(ids[:16]), [8]byte(ids[16:]))
}

// reply answers from the waypoint. gRPC requests get a trailers-only gRPC
// answer (HTTP 200, grpc-status), as Envoy's local replies do.
func (ex *exchange) reply(status int, body, flags string, rt *router.Route, location string) {
	h := ex.w.Header()
	ex.code, ex.flags = status, flags
	if location != "" {
		h.Set("Location", location)
	}
	if ex.grpc && status != http.StatusOK && location == "" {
		gs := strconv.Itoa(filter.GRPCStatus(status))
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", gs)
		msg := body
		if msg == "" {
			msg = http.StatusText(status)
		}
		h.Set("Grpc-Message", msg)
		if rt != nil {
			rt.ResponseHeaders.Apply(h)
		}
		ex.code, ex.grpcStatus = http.StatusOK, gs
		ex.w.WriteHeader(http.StatusOK)
		return
	}
	if body != "" {
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	if rt != nil {
		rt.ResponseHeaders.Apply(h)
	}
	ex.w.WriteHeader(status)
	n, _ := io.WriteString(ex.w, body)
	ex.respBytes = int64(n)
}

// hopHeaders are connection-specific and not forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// forward sends the request upstream (retrying as the route allows) and
// copies the answer back.
func (ex *exchange) forward(reqID [16]byte, spanID [8]byte) {
	l, r, p := ex.l, ex.r, &ex.plan
	rt, c := p.Route, p.Cluster
	ctx := ex.ctx
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
	}
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Close = false
	out.URL.Scheme = "http"
	if np := rt.RewritePath(r.URL.Path); np != r.URL.Path {
		out.URL.Path, out.URL.RawPath = np, ""
	}
	if rt.HostRewrite != "" {
		out.Host = rt.HostRewrite
	}
	te := r.Header.Get("Te")
	removeHopHeaders(out.Header)
	if strings.Contains(te, "trailers") {
		out.Header.Set("Te", "trailers")
	}
	rt.RequestHeaders.Apply(out.Header)
	filter.AppendForwardedFor(out.Header, ex.t.client)
	if out.Header.Get(filter.HeaderForwardedProt) == "" {
		out.Header.Set(filter.HeaderForwardedProt, "http")
	}
	ex.requestID = out.Header.Get(filter.HeaderRequestID)
	if ex.requestID == "" {
		ex.requestID = filter.RequestID(reqID)
		out.Header.Set(filter.HeaderRequestID, ex.requestID)
	}
	tp := r.Header.Get(filter.HeaderTraceparent)
	if tp == "" {
		tp = ex.t.traceparent
	}
	if next, ok := filter.NextTraceparent(tp, spanID); ok {
		out.Header.Set(filter.HeaderTraceparent, next)
	}
	h2 := filter.UpstreamHTTP2(c.HTTP2, ex.grpc, r.ProtoMajor)

	// Body: buffered when small enough to be sent again, else streamed
	// (and replayable only while untouched).
	var buf []byte
	var tb *trackedBody
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && ex.body == nil:
		out.Body, out.ContentLength = http.NoBody, 0
	case rt.Retry != nil && r.ContentLength > 0 && r.ContentLength <= l.cfg.MaxRetryBody:
		buf = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			ex.reply(http.StatusBadRequest, "request body: "+err.Error(), "DPE", rt, "")
			return
		}
	default:
		tb = &trackedBody{r: r.Body}
		out.Body = tb
	}
	replayable := func() bool { return tb == nil || !tb.touched.Load() }

	var res *http.Response
	var choice *upstream.Choice
	var attemptCancel context.CancelFunc
	var lastErr error
	var perTryTimedOut bool
	for n := 1; ; n++ {
		ex.attempts = n
		choice = l.balancer.Pick(c)
		if choice == nil {
			ex.reply(http.StatusServiceUnavailable, BodyNoHealthy, "UH", rt, "")
			return
		}
		ex.endpoint = choice.Endpoint
		actx, cancel := context.WithCancel(upstream.WithForwardedFor(ctx, ex.t.client))
		var timedOut atomic.Bool
		var timer *time.Timer
		if rt.PerTryTimeout > 0 {
			timer = time.AfterFunc(rt.PerTryTimeout, func() { timedOut.Store(true); cancel() })
		}
		req := out.WithContext(actx)
		req.URL.Host = choice.Endpoint.Destination.String()
		if buf != nil {
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(buf)), int64(len(buf))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		}
		sent := time.Now()
		res, lastErr = l.up.RoundTrip(choice.Endpoint, h2, c.ConnectTimeout, req)
		ex.upstreamTime = time.Since(sent)
		if timer != nil && !timer.Stop() && timedOut.Load() {
			if res != nil {
				res.Body.Close()
				res = nil
			}
			if lastErr == nil {
				lastErr = context.DeadlineExceeded
			}
		}
		perTryTimedOut = timedOut.Load()
		att := filter.Attempt{GRPCStatus: -1, PerTryTimeout: perTryTimedOut}
		var ce *upstream.ConnectError
		switch {
		case res != nil:
			att.Status = res.StatusCode
			if gs := res.Header.Get("Grpc-Status"); gs != "" {
				att.GRPCStatus, _ = strconv.Atoi(gs)
			}
		case errors.As(lastErr, &ce):
			att.ConnectFailure = true
		case !perTryTimedOut && ctx.Err() == nil:
			att.Reset = true
		}
		failed := res == nil || res.StatusCode >= 500
		left := time.Duration(1<<63 - 1)
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		if ex.ctx.Err() != nil || !filter.ShouldRetry(rt.Retry, n, att, replayable(), left) {
			attemptCancel = cancel
			if res == nil {
				choice.Done(failed)
			}
			break
		}
		choice.Done(failed)
		if res != nil {
			io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
		}
		cancel()
		wait := time.NewTimer(rt.Retry.Backoff(n))
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
		}
	}
	defer attemptCancel()
	if res == nil {
		ex.upstreamError(lastErr, perTryTimedOut, ctx)
		return
	}
	defer func() { choice.Done(res.StatusCode >= 500) }()
	ex.copyResponse(res, rt)
}

// upstreamError answers a request whose last attempt got no response.
func (ex *exchange) upstreamError(err error, perTryTimedOut bool, ctx context.Context) {
	rt := ex.plan.Route
	retried := ""
	if ex.attempts > 1 {
		retried = ",URX"
	}
	var ce *upstream.ConnectError
	switch {
	case ex.ctx.Err() != nil:
		ex.code, ex.flags = 0, "DC"
	case perTryTimedOut || errors.Is(ctx.Err(), context.DeadlineExceeded):
		ex.reply(http.StatusGatewayTimeout, BodyTimeout, "UT"+retried, rt, "")
	case errors.As(err, &ce):
		ex.reply(http.StatusServiceUnavailable, BodyConnectFailure, "UF"+retried, rt, "")
	default:
		ex.reply(http.StatusServiceUnavailable, BodyReset, "UC"+retried, rt, "")
	}
	if err != nil && ex.code != 0 {
		ex.l.log.Debug("upstream request failed", zap.Stringer("endpoint", ex.endpoint.Destination), zap.Error(err))
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyResponse writes the upstream response, trailers included, flushing
// as data arrives when its length is unknown (streaming, gRPC).
func (ex *exchange) copyResponse(res *http.Response, rt *router.Route) {
	defer res.Body.Close()
	h := ex.w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	removeHopHeaders(h)
	announced := len(res.Trailer) > 0
	for k := range res.Trailer {
		h.Add("Trailer", k)
	}
	rt.ResponseHeaders.Apply(h)
	if ex.l.cfg.UpstreamServiceTime {
		h.Set(filter.HeaderUpstreamTime, strconv.FormatInt(ex.upstreamTime.Milliseconds(), 10))
	}
	ex.code = res.StatusCode
	ex.grpcStatus = res.Header.Get("Grpc-Status")
	ex.w.WriteHeader(res.StatusCode)

	stream := res.ContentLength < 0
	flusher, _ := ex.w.(http.Flusher)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	b := *bp
	for {
		n, rerr := res.Body.Read(b)
		if n > 0 {
			if _, werr := ex.w.Write(b[:n]); werr != nil {
				ex.flags = "DC"
				return
			}
			ex.respBytes += int64(n)
			if stream && flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream failed mid-response (or the route timeout hit):
			// reset the downstream stream rather than end it cleanly.
			ex.flags = "UPE"
			if errors.Is(rerr, context.DeadlineExceeded) {
				ex.flags = "UT"
			}
			ex.finish()
			ex.finished = true
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range res.Trailer {
		if announced {
			h[k] = vv
		} else {
			h[http.TrailerPrefix+k] = vv
		}
	}
	if gs := res.Trailer.Get("Grpc-Status"); gs != "" {
		ex.grpcStatus = gs
	}
}

// finish reports the request to the metrics and the access log.
func (ex *exchange) finish() {
	if ex.finished {
		return
	}
	ex.finished = true
	l := ex.l
	var reqBytes int64
	if ex.body != nil {
		reqBytes = ex.body.n.Load()
	}
	dur := time.Since(ex.start)
	var dest state.Endpoint
	if ex.endpoint != nil {
		dest = *ex.endpoint
	}
	svc := ""
	if ex.plan.Cluster != nil {
		svc = ex.plan.Cluster.Service
	}
	l.cfg.Metrics.observe(RequestLabels{Source: ex.t.peer, DestinationService: svc, Destination: dest.Identity,
		GRPC: ex.grpc, Code: ex.code, GRPCStatus: ex.grpcStatus, Flags: ex.flags},
		float64(dur.Microseconds())/1000, reqBytes, ex.respBytes)
	if ce := l.log.Check(zap.InfoLevel, "access"); ce != nil {
		routeName := "-"
		if ex.plan.Route != nil {
			routeName = ex.plan.Route.Name
		}
		upstreamAddr := "-"
		if ex.endpoint != nil {
			upstreamAddr = ex.endpoint.Destination.String()
		}
		ce.Write(
			zap.String("method", ex.r.Method),
			zap.String("authority", ex.r.Host),
			zap.String("path", ex.r.URL.Path),
			zap.String("protocol", ex.r.Proto),
			zap.Int("code", ex.code),
			zap.String("flags", ex.flags),
			zap.String("grpc_status", ex.grpcStatus),
			zap.Int64("bytes_received", reqBytes),
			zap.Int64("bytes_sent", ex.respBytes),
			zap.Duration("duration", dur),
			zap.Duration("upstream_service_time", ex.upstreamTime),
			zap.Int("attempts", ex.attempts),
			zap.String("route", routeName),
			zap.String("cluster", orDash(ex.plan.ClusterName)),
			zap.String("upstream", upstreamAddr),
			zap.String("source_principal", ex.t.peerURI),
			zap.String("client", ex.t.client.String()),
			zap.Stringer("connect_authority", ex.t.authority),
			zap.String("request_id", orDash(ex.requestID)),
		)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// countingBody counts the request body bytes read.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// trackedBody streams a request body upstream and remembers whether any of
// it was read (after that, the request cannot be retried). Close does not
// close the downstream body: a failed attempt must not end it.
type trackedBody struct {
	r       io.Reader
	touched atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	return b.r.Read(p)
}

func (b *trackedBody) Close() error { return nil }
