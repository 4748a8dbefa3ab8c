package model

import (
	"sort"

	"google.golang.org/protobuf/proto"
)

// Diff compares two resource sets of one type URL: changed holds the
// resources of next that are new or differ (proto.Equal) from prev; removed
// lists, sorted, the names in prev that next no longer has.
func Diff(prev, next map[string]proto.Message) (changed map[string]proto.Message, removed []string) {
	changed = map[string]proto.Message{}
	for name, n := range next {
		if p, ok := prev[name]; !ok || !proto.Equal(p, n) {
			changed[name] = n
		}
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	sort.Strings(removed)
	return changed, removed
}
