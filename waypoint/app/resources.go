package app

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambient-mesh/ambient/pkg/xds"
)

// OwnResources filters one xDS update of typeURL to this waypoint's
// resources. Listeners and route configurations are kept only when their
// name starts with prefix ("<namespace>/<name>/"), and are returned with the
// prefix stripped from their names and, for listeners, from the
// route_config_name of every HTTP connection manager's RDS reference.
// Clusters and endpoints are shared and returned unchanged. Inputs are not
// modified; kept listeners and routes are copies.
func OwnResources(prefix, typeURL string, upserts map[string]proto.Message, removes []string) (map[string]proto.Message, []string, error) {
	if typeURL != xds.ListenerType && typeURL != xds.RouteType {
		return upserts, removes, nil
	}
	own := make(map[string]proto.Message, len(upserts))
	for name, m := range upserts {
		short, ok := strip(prefix, name)
		if !ok {
			continue
		}
		switch r := m.(type) {
		case *listenerv3.Listener:
			l, err := stripListener(prefix, short, r)
			if err != nil {
				return nil, nil, fmt.Errorf("listener %q: %w", name, err)
			}
			own[short] = l
		case *routev3.RouteConfiguration:
			rc := proto.Clone(r).(*routev3.RouteConfiguration)
			rc.Name = short
			own[short] = rc
		default:
			return nil, nil, fmt.Errorf("resource %q of %s: unexpected Go type %T", name, xds.ShortType(typeURL), m)
		}
	}
	var gone []string
	for _, name := range removes {
		if short, ok := strip(prefix, name); ok {
			gone = append(gone, short)
		}
	}
	return own, gone, nil
}

// strip returns name without prefix, and whether name had it (and more).
func strip(prefix, name string) (string, bool) {
	short, ok := strings.CutPrefix(name, prefix)
	return short, ok && short != ""
}

// stripListener copies l named short, with prefixed RDS references stripped.
func stripListener(prefix, short string, l *listenerv3.Listener) (*listenerv3.Listener, error) {
	l = proto.Clone(l).(*listenerv3.Listener)
	l.Name = short
	for i, fc := range l.FilterChains {
		for j, f := range fc.Filters {
			tc := f.GetTypedConfig()
			if tc == nil || !tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("filter_chains[%d].filters[%d]: %w", i, j, err)
			}
			rds := hcm.GetRds()
			if rds == nil {
				continue
			}
			short, ok := strip(prefix, rds.RouteConfigName)
			if !ok {
				continue
			}
			rds.RouteConfigName = short
			a, err := anypb.New(hcm)
			if err != nil {
				return nil, fmt.Errorf("filter_chains[%d].filters[%d]: %w", i, j, err)
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return l, nil
}
