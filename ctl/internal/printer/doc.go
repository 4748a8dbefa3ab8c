// Package printer writes ambientctl's output: an aligned table, or the raw
// object as JSON or YAML (-o table|json|yaml).
package printer
