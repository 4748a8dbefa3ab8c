package router

import (
	"net/http"
	"net/url"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// fromYAML decodes Envoy proto YAML (protojson field names) into m.
func fromYAML(t testing.TB, y string, m proto.Message) {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatalf("protojson: %v\n%s", err, js)
	}
}

func compileYAML(t testing.TB, y string) *Table {
	t.Helper()
	rc := &routev3.RouteConfiguration{}
	fromYAML(t, y, rc)
	tbl, err := Compile(rc)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

// req builds a RequestInfo; headers as name, value pairs.
func req(host, method, path string, kv ...string) RequestInfo {
	r := RequestInfo{Host: host, Method: method, Path: path, Headers: http.Header{}}
	if i := indexByte(path, '?'); i >= 0 {
		r.Path = path[:i]
		r.Query, _ = url.ParseQuery(path[i+1:])
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Headers.Add(kv[i], kv[i+1])
	}
	return r
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
