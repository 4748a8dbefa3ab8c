package authz

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

// Request is what policies are evaluated against.
type Request struct {
	Method          string
	Host            string // :authority
	Path            string // :path, query included
	Headers         http.Header
	DestinationPort uint32
	// Peer is the HBONE peer's verified identity; zero when unauthenticated.
	Peer spiffe.Identity
	// PeerURI is Peer.String(), computed once per HBONE connection by callers
	// that want allocation-free evaluation; derived from Peer when empty.
	PeerURI string
}

// Engine is one compiled RBAC filter configuration.
type Engine struct {
	enforced bool
	deny     bool
	policies []policy // sorted by name
}

type policy struct {
	name  string
	perms []permission
	ids   []principal
}

// AllowAll is an engine that enforces nothing (RBAC without rules).
var AllowAll = &Engine{}

// Compile compiles the RBAC http filter config. Rules absent means the
// filter enforces nothing; shadow rules are accepted and ignored.
func Compile(cfg *rbacfilterv3.RBAC) (*Engine, error) {
	if err := strmatch.OnlyFields(cfg, "rbac", "rules", "shadow_rules", "rules_stat_prefix", "shadow_rules_stat_prefix", "track_per_rule_stats"); err != nil {
		return nil, err
	}
	rules := cfg.GetRules()
	if rules == nil {
		return AllowAll, nil
	}
	if err := strmatch.OnlyFields(rules, "rbac.rules", "action", "policies"); err != nil {
		return nil, err
	}
	e := &Engine{enforced: true}
	switch rules.Action {
	case rbacv3.RBAC_ALLOW:
	case rbacv3.RBAC_DENY:
		e.deny = true
	default:
		return nil, fmt.Errorf("rbac.rules.action %s: %w", rules.Action, strmatch.ErrUnsupported)
	}
	names := make([]string, 0, len(rules.Policies))
	for n := range rules.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := rules.Policies[n]
		path := "rbac.rules.policies[" + n + "]"
		if err := strmatch.OnlyFields(p, path, "permissions", "principals"); err != nil {
			return nil, err
		}
		cp := policy{name: n}
		for i, pm := range p.Permissions {
			c, err := compilePermission(pm, fmt.Sprintf("%s.permissions[%d]", path, i))
			if err != nil {
				return nil, err
			}
			cp.perms = append(cp.perms, c)
		}
		for i, id := range p.Principals {
			c, err := compilePrincipal(id, fmt.Sprintf("%s.principals[%d]", path, i))
			if err != nil {
				return nil, err
			}
			cp.ids = append(cp.ids, c)
		}
		e.policies = append(e.policies, cp)
	}
	return e, nil
}

// CompilePerRoute compiles an RBACPerRoute override: absent rbac disables
// the filter for the route.
func CompilePerRoute(cfg *rbacfilterv3.RBACPerRoute) (*Engine, error) {
	if err := strmatch.OnlyFields(cfg, "rbac_per_route", "rbac"); err != nil {
		return nil, err
	}
	if cfg.GetRbac() == nil {
		return AllowAll, nil
	}
	return Compile(cfg.Rbac)
}

// Evaluate returns whether the engine lets the request through and the
// name of the policy that decided (empty when none matched).
func (e *Engine) Evaluate(r *Request) (bool, string) {
	if e == nil || !e.enforced {
		return true, ""
	}
	c := &evalCtx{r: r, sr: strmatch.Request{Method: r.Method, Authority: r.Host, Path: r.Path, Headers: r.Headers}}
	c.peer = r.PeerURI
	if c.peer == "" && !r.Peer.IsZero() {
		c.peer = r.Peer.String()
	}
	for i := range e.policies {
		p := &e.policies[i]
		if p.match(c) {
			return !e.deny, p.name
		}
	}
	return e.deny, ""
}

// evalCtx is one evaluation's view of the request.
type evalCtx struct {
	r    *Request
	sr   strmatch.Request
	peer string // the peer's SPIFFE URI, "" when unauthenticated
}

func (p *policy) match(c *evalCtx) bool {
	permOK := false
	for i := range p.perms {
		if p.perms[i].match(c) {
			permOK = true
			break
		}
	}
	if !permOK {
		return false
	}
	for i := range p.ids {
		if p.ids[i].match(c) {
			return true
		}
	}
	return false
}

// Filter is one RBAC http filter of a connection manager, in chain order.
type Filter struct {
	Name   string
	Engine *Engine
}

// FromHTTPFilters compiles the RBAC filters among an HCM's http filters.
func FromHTTPFilters(filters []*hcmv3.HttpFilter) ([]Filter, error) {
	var out []Filter
	for i, f := range filters {
		tc := f.GetTypedConfig()
		if tc == nil || !strings.HasSuffix(tc.TypeUrl, "/envoy.extensions.filters.http.rbac.v3.RBAC") {
			continue
		}
		cfg := &rbacfilterv3.RBAC{}
		if err := tc.UnmarshalTo(cfg); err != nil {
			return nil, fmt.Errorf("http_filters[%d] %s: %w", i, f.Name, err)
		}
		e, err := Compile(cfg)
		if err != nil {
			return nil, fmt.Errorf("http_filters[%d] %s: %w", i, f.Name, err)
		}
		out = append(out, Filter{Name: f.Name, Engine: e})
	}
	return out, nil
}

// Decision is the outcome of the whole RBAC filter chain.
type Decision struct {
	Allowed bool
	Filter  string // the filter that denied, or ""
	Policy  string // the policy that matched in the deciding filter, if any
}

// Chain runs the RBAC filters in order, each replaced by the route's
// override of the same name when present; the first denial stops the chain.
func Chain(filters []Filter, overrides map[string]*Engine, r *Request) Decision {
	var last string
	for _, f := range filters {
		e := f.Engine
		if o, ok := overrides[f.Name]; ok {
			e = o
		}
		ok, pol := e.Evaluate(r)
		if !ok {
			return Decision{Allowed: false, Filter: f.Name, Policy: pol}
		}
		if pol != "" {
			last = pol
		}
	}
	return Decision{Allowed: true, Policy: last}
}
