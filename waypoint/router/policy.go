package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

// RetryPolicy says when and how often to retry an upstream request.
type RetryPolicy struct {
	// Retries is the number of retries after the first attempt (Envoy
	// num_retries, default 1).
	Retries              int
	RetryOn              []string // Envoy retry_on conditions
	RetriableStatusCodes []int
	BackoffBase          time.Duration // default 25ms
	BackoffMax           time.Duration // default 10 × base
}

// Retry conditions the waypoint implements.
var retryConditions = []string{"5xx", "gateway-error", "reset", "connect-failure", "refused-stream",
	"unavailable", "cancelled", "retriable-status-codes", "retriable-4xx"}

func compileRetry(rp *routev3.RetryPolicy, path string) (*RetryPolicy, time.Duration, error) {
	if err := strmatch.OnlyFields(rp, path, "retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off"); err != nil {
		return nil, 0, err
	}
	p := &RetryPolicy{Retries: 1, BackoffBase: 25 * time.Millisecond}
	if rp.NumRetries != nil {
		p.Retries = int(rp.NumRetries.Value)
	}
	if rp.RetryOn != "" {
		for _, c := range strings.Split(rp.RetryOn, ",") {
			c = strings.TrimSpace(c)
			if !slices.Contains(retryConditions, c) {
				return nil, 0, fmt.Errorf("%s.retry_on %q: %w", path, c, ErrUnsupported)
			}
			p.RetryOn = append(p.RetryOn, c)
		}
	}
	for _, c := range rp.RetriableStatusCodes {
		p.RetriableStatusCodes = append(p.RetriableStatusCodes, int(c))
	}
	if b := rp.RetryBackOff; b != nil {
		if err := strmatch.OnlyFields(b, path+".retry_back_off", "base_interval", "max_interval"); err != nil {
			return nil, 0, err
		}
		p.BackoffBase = b.BaseInterval.AsDuration()
		if b.MaxInterval != nil {
			p.BackoffMax = b.MaxInterval.AsDuration()
		}
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = 10 * p.BackoffBase
	}
	return p, rp.GetPerTryTimeout().AsDuration(), nil
}

// RetriableStatus reports whether an upstream response status warrants a
// retry under this policy.
func (p *RetryPolicy) RetriableStatus(code int) bool {
	for _, c := range p.RetryOn {
		switch {
		case c == "5xx" && code >= 500,
			c == "gateway-error" && (code == 502 || code == 503 || code == 504),
			c == "retriable-4xx" && code == 409,
			c == "retriable-status-codes" && slices.Contains(p.RetriableStatusCodes, code):
			return true
		}
	}
	return false
}

// RetriableConnectFailure reports whether a failure to connect (or a reset
// before response headers) warrants a retry.
func (p *RetryPolicy) RetriableConnectFailure() bool {
	for _, c := range p.RetryOn {
		switch c {
		case "5xx", "gateway-error", "reset", "connect-failure":
			return true
		}
	}
	return false
}

// Backoff is the wait before retry number n (1-based): exponential from the
// base, capped at the maximum, never below the base (Gateway API requires
// the configured minimum).
func (p *RetryPolicy) Backoff(n int) time.Duration {
	d := p.BackoffBase
	for i := 1; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	return min(d, max(p.BackoffMax, p.BackoffBase))
}

// Fault is fault injection for a route.
type Fault struct {
	Delay           time.Duration
	DelayPerMillion uint32 // share of requests delayed
	AbortStatus     int
	AbortPerMillion uint32 // share of requests aborted
}

func perMillion(f *typev3.FractionalPercent, path string) (uint32, error) {
	if f == nil {
		return 1_000_000, nil // absent: every request
	}
	var n uint64
	switch f.Denominator {
	case typev3.FractionalPercent_HUNDRED:
		n = uint64(f.Numerator) * 10000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n = uint64(f.Numerator) * 100
	case typev3.FractionalPercent_MILLION:
		n = uint64(f.Numerator)
	default:
		return 0, fmt.Errorf("%s.denominator %s: %w", path, f.Denominator, ErrUnsupported)
	}
	return uint32(min(n, 1_000_000)), nil
}

func compileFault(f *faultv3.HTTPFault, path string) (*Fault, error) {
	if err := strmatch.OnlyFields(f, path, "delay", "abort"); err != nil {
		return nil, err
	}
	if f.Delay == nil && f.Abort == nil {
		return nil, nil
	}
	out := &Fault{}
	if d := f.Delay; d != nil {
		if err := strmatch.OnlyFields(d, path+".delay", "fixed_delay", "percentage"); err != nil {
			return nil, err
		}
		if d.GetFixedDelay() == nil {
			return nil, fmt.Errorf("%s.delay: fixed_delay required", path)
		}
		out.Delay = d.GetFixedDelay().AsDuration()
		pm, err := perMillion(d.Percentage, path+".delay.percentage")
		if err != nil {
			return nil, err
		}
		out.DelayPerMillion = pm
	}
	if a := f.Abort; a != nil {
		if err := strmatch.OnlyFields(a, path+".abort", "http_status", "percentage"); err != nil {
			return nil, err
		}
		out.AbortStatus = int(a.GetHttpStatus())
		pm, err := perMillion(a.Percentage, path+".abort.percentage")
		if err != nil {
			return nil, err
		}
		out.AbortPerMillion = pm
	}
	return out, nil
}

// Decide draws whether this request is delayed and/or aborted.
func (f *Fault) Decide(rnd *rand.Rand) (delay time.Duration, abortStatus int) {
	if f == nil {
		return 0, 0
	}
	if f.Delay > 0 && rnd.Uint32N(1_000_000) < f.DelayPerMillion {
		delay = f.Delay
	}
	if f.AbortStatus != 0 && rnd.Uint32N(1_000_000) < f.AbortPerMillion {
		abortStatus = f.AbortStatus
	}
	return delay, abortStatus
}

// compilePerFilter reads typed_per_filter_config from the route config, the
// virtual host and the route; the most specific level wins per filter name.
func (out *Route) compilePerFilter(levels []map[string]*anypb.Any, path string, cache engineCache) error {
	merged := map[string]*anypb.Any{}
	for _, l := range levels {
		for k, v := range l {
			merged[k] = v
		}
	}
	for name, a := range merged {
		p := path + ".typed_per_filter_config[" + name + "]"
		if e, ok := cache[a]; ok {
			if out.Authz == nil {
				out.Authz = map[string]*authz.Engine{}
			}
			out.Authz[name] = e
			continue
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch m := msg.(type) {
		case *faultv3.HTTPFault:
			f, err := compileFault(m, p)
			if err != nil {
				return err
			}
			out.Fault = f
		case *rbacfilterv3.RBACPerRoute:
			e, err := authz.CompilePerRoute(m)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if out.Authz == nil {
				out.Authz = map[string]*authz.Engine{}
			}
			out.Authz[name] = e
			cache[a] = e
		default:
			return fmt.Errorf("%s: %s: %w", p, a.TypeUrl, ErrUnsupported)
		}
	}
	return nil
}

// engineCache holds RBAC engines compiled from a typed_per_filter_config
// entry, keyed by the entry itself.
type engineCache map[*anypb.Any]*authz.Engine
