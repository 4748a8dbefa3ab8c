package install

import (
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"

	"github.com/ambient-mesh/ambient/charts"
)

// chartKeys maps a top-level values key to the chart it configures.
var chartKeys = map[string]string{
	"base":       charts.Base,
	"istiodLite": charts.IstiodLite,
	"ztunnel":    charts.Ztunnel,
}

// LoadValues merges -f files and --set flags (later wins), like helm.
func LoadValues(files, sets []string) (map[string]any, error) {
	opts := values.Options{ValueFiles: files, Values: sets}
	v, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("read values: %w", err)
	}
	return v, nil
}

// SplitValues returns each chart's values: its own section plus "global".
func SplitValues(v map[string]any) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	for _, c := range charts.All {
		out[c] = map[string]any{}
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "global" {
			for _, c := range charts.All {
				out[c]["global"] = v[k]
			}
			continue
		}
		c, ok := chartKeys[k]
		if !ok {
			return nil, fmt.Errorf("unknown values key %q: use global.*, %s", k, strings.Join([]string{"base.*", "istiodLite.*", "ztunnel.*"}, ", "))
		}
		sub, ok := v[k].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("values key %q must be a map, e.g. --set %s.logLevel=debug", k, k)
		}
		for sk, sv := range sub {
			if sk == "global" {
				return nil, fmt.Errorf("%s.global is not allowed: set global.* for all charts", k)
			}
			out[c][sk] = sv
		}
	}
	return out, nil
}
