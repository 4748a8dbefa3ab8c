package authz

import (
	"fmt"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"

	"github.com/ambient-mesh/ambient/waypoint/router/internal/strmatch"
)

type permKind uint8

const (
	pAny permKind = iota
	pAnd
	pOr
	pNot
	pHeader
	pPath
	pPort
)

type permission struct {
	kind   permKind
	subs   []permission
	header strmatch.Header
	path   strmatch.String
	port   uint32
}

func compilePermission(p *rbacv3.Permission, path string) (permission, error) {
	var out permission
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return out, fmt.Errorf("%s.any: false is not valid", path)
		}
		out.kind = pAny
	case *rbacv3.Permission_AndRules, *rbacv3.Permission_OrRules:
		out.kind = pAnd
		set := p.GetAndRules()
		field := "and_rules"
		if _, ok := r.(*rbacv3.Permission_OrRules); ok {
			out.kind, set, field = pOr, p.GetOrRules(), "or_rules"
		}
		for i, s := range set.GetRules() {
			c, err := compilePermission(s, fmt.Sprintf("%s.%s[%d]", path, field, i))
			if err != nil {
				return out, err
			}
			out.subs = append(out.subs, c)
		}
	case *rbacv3.Permission_NotRule:
		c, err := compilePermission(r.NotRule, path+".not_rule")
		if err != nil {
			return out, err
		}
		out.kind, out.subs = pNot, []permission{c}
	case *rbacv3.Permission_Header:
		h, err := strmatch.CompileHeader(r.Header, path+".header")
		if err != nil {
			return out, err
		}
		out.kind, out.header = pHeader, h
	case *rbacv3.Permission_UrlPath:
		if err := strmatch.OnlyFields(r.UrlPath, path+".url_path", "path"); err != nil {
			return out, err
		}
		s, err := strmatch.Compile(r.UrlPath.GetPath(), path+".url_path.path")
		if err != nil {
			return out, err
		}
		out.kind, out.path = pPath, s
	case *rbacv3.Permission_DestinationPort:
		out.kind, out.port = pPort, r.DestinationPort
	case nil:
		return out, fmt.Errorf("%s: empty permission", path)
	default:
		return out, fmt.Errorf("%s: permission %T: %w", path, r, strmatch.ErrUnsupported)
	}
	return out, nil
}

func (p *permission) match(c *evalCtx) bool {
	switch p.kind {
	case pAny:
		return true
	case pAnd:
		for i := range p.subs {
			if !p.subs[i].match(c) {
				return false
			}
		}
		return true
	case pOr:
		for i := range p.subs {
			if p.subs[i].match(c) {
				return true
			}
		}
		return false
	case pNot:
		return !p.subs[0].match(c)
	case pHeader:
		return p.header.Match(&c.sr)
	case pPath:
		path := c.r.Path
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
		return p.path.Match(path)
	case pPort:
		return c.r.DestinationPort == p.port
	}
	return false
}

type principal struct {
	kind   permKind // pAny, pAnd, pOr, pNot, pHeader, or pAuth
	subs   []principal
	header strmatch.Header
	name   *strmatch.String // authenticated principal_name; nil: any authenticated peer
}

const pAuth permKind = 100

func compilePrincipal(p *rbacv3.Principal, path string) (principal, error) {
	var out principal
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return out, fmt.Errorf("%s.any: false is not valid", path)
		}
		out.kind = pAny
	case *rbacv3.Principal_AndIds, *rbacv3.Principal_OrIds:
		out.kind = pAnd
		set := p.GetAndIds()
		field := "and_ids"
		if _, ok := id.(*rbacv3.Principal_OrIds); ok {
			out.kind, set, field = pOr, p.GetOrIds(), "or_ids"
		}
		for i, s := range set.GetIds() {
			c, err := compilePrincipal(s, fmt.Sprintf("%s.%s[%d]", path, field, i))
			if err != nil {
				return out, err
			}
			out.subs = append(out.subs, c)
		}
	case *rbacv3.Principal_NotId:
		c, err := compilePrincipal(id.NotId, path+".not_id")
		if err != nil {
			return out, err
		}
		out.kind, out.subs = pNot, []principal{c}
	case *rbacv3.Principal_Header:
		h, err := strmatch.CompileHeader(id.Header, path+".header")
		if err != nil {
			return out, err
		}
		out.kind, out.header = pHeader, h
	case *rbacv3.Principal_Authenticated_:
		if err := strmatch.OnlyFields(id.Authenticated, path+".authenticated", "principal_name"); err != nil {
			return out, err
		}
		out.kind = pAuth
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			s, err := strmatch.Compile(pn, path+".authenticated.principal_name")
			if err != nil {
				return out, err
			}
			out.name = &s
		}
	case nil:
		return out, fmt.Errorf("%s: empty principal", path)
	default:
		return out, fmt.Errorf("%s: principal %T: %w", path, id, strmatch.ErrUnsupported)
	}
	return out, nil
}

func (p *principal) match(c *evalCtx) bool {
	switch p.kind {
	case pAny:
		return true
	case pAnd:
		for i := range p.subs {
			if !p.subs[i].match(c) {
				return false
			}
		}
		return true
	case pOr:
		for i := range p.subs {
			if p.subs[i].match(c) {
				return true
			}
		}
		return false
	case pNot:
		return !p.subs[0].match(c)
	case pHeader:
		return p.header.Match(&c.sr)
	case pAuth:
		if c.peer == "" {
			return false
		}
		return p.name == nil || p.name.Match(c.peer)
	}
	return false
}
