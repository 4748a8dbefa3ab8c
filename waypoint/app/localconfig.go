package app

import (
	"encoding/json"
	"fmt"
	"os"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/waypoint/state"
)

// LoadLocalConfig reads a --local-config file: a YAML or JSON object with
// the lists "listeners", "routes", "clusters" and "endpoints" of Envoy v3
// resources in their JSON form (istiod-lite's waypointxds golden outputs
// have this shape; other keys are ignored). Names are used as they are: no
// "<namespace>/<name>/" prefix.
func LoadLocalConfig(path string) (state.Resources, error) {
	var r state.Resources
	data, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("read local config: %w", err)
	}
	return parseLocalConfig(path, data)
}

func parseLocalConfig(path string, data []byte) (state.Resources, error) {
	var r state.Resources
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return r, fmt.Errorf("local config %s: %w", path, err)
	}
	var doc struct {
		Listeners, Routes, Clusters, Endpoints []json.RawMessage
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return r, fmt.Errorf("local config %s: want an object with listeners, routes, clusters, endpoints: %w", path, err)
	}
	if r.Listeners, err = decodeAll[listenerv3.Listener](path, "listeners", doc.Listeners); err != nil {
		return r, err
	}
	if r.Routes, err = decodeAll[routev3.RouteConfiguration](path, "routes", doc.Routes); err != nil {
		return r, err
	}
	if r.Clusters, err = decodeAll[clusterv3.Cluster](path, "clusters", doc.Clusters); err != nil {
		return r, err
	}
	if r.Endpoints, err = decodeAll[endpointv3.ClusterLoadAssignment](path, "endpoints", doc.Endpoints); err != nil {
		return r, err
	}
	return r, nil
}

// decodeAll decodes raw JSON resources into new T messages.
func decodeAll[T any, P interface {
	*T
	proto.Message
}](path, key string, raws []json.RawMessage) ([]P, error) {
	out := make([]P, 0, len(raws))
	for i, raw := range raws {
		m := P(new(T))
		if err := protojson.Unmarshal(raw, m); err != nil {
			return nil, fmt.Errorf("local config %s: %s[%d]: %w", path, key, i, err)
		}
		out = append(out, m)
	}
	return out, nil
}
