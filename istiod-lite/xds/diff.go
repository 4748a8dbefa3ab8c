package xds

import (
	"sort"

	"google.golang.org/protobuf/proto"
)

// diff compares the current and the desired set of a type and returns the
// resources to upsert (new or not proto.Equal) and the names to remove.
// Both results are empty when nothing changed. Removed names are sorted.
// The same message pointer is unchanged without comparing: a model that
// reuses the messages of unchanged resources makes this cheap (proto.Equal
// costs ~5 µs per workload, 60 ms for 11,000 resources on a loaded CI core).
func diff(current, desired map[string]proto.Message) (upsert map[string]proto.Message, remove []string) {
	upsert = map[string]proto.Message{}
	for name, want := range desired {
		if have, ok := current[name]; !ok || (have != want && !proto.Equal(have, want)) {
			upsert[name] = want
		}
	}
	for name := range current {
		if _, ok := desired[name]; !ok {
			remove = append(remove, name)
		}
	}
	sort.Strings(remove)
	return upsert, remove
}
