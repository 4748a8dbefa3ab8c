package xds

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestEnvoyTypeURLs(t *testing.T) {
	for got, want := range map[string]string{
		ListenerType: resourcev3.ListenerType, RouteType: resourcev3.RouteType,
		ClusterType: resourcev3.ClusterType, EndpointType: resourcev3.EndpointType,
	} {
		if got != want {
			t.Errorf("type URL %q, go-control-plane has %q", got, want)
		}
	}
}

func TestShortType(t *testing.T) {
	for in, want := range map[string]string{
		AddressType:                   "wads",
		AuthorizationType:             "wdsauthz",
		ListenerType:                  "lds",
		RouteType:                     "rds",
		ClusterType:                   "cds",
		EndpointType:                  "eds",
		"type.googleapis.com/foo.Bar": "type.googleapis.com/foo.Bar",
	} {
		if got := ShortType(in); got != want {
			t.Errorf("ShortType(%q) = %q, want %q", in, got, want)
		}
	}
}
