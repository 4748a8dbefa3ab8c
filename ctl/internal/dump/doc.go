// Package dump defines the debug documents ambientctl reads and turns them
// into table rows (pure functions, golden-tested):
//
//   - ztunnel's admin GET :15000/config_dump — a JSON object with the sections
//     "workloads", "services", "policies", "certificates", "connections", each
//     an array (see the types below; unknown fields are ignored, missing ones
//     print as "-");
//   - istiod-lite's GET :15014/debug/connections — an array of [Connection],
//     one per connected xDS client.
//
// `-o json` prints a section exactly as ztunnel sent it.
package dump
