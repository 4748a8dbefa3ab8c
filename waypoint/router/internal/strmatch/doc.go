// Package strmatch compiles Envoy's StringMatcher and HeaderMatcher into
// allocation-free matchers, shared by the waypoint's route table and its
// RBAC evaluator. Unsupported fields are reported as errors naming the field
// so the waypoint can NACK the configuration.
package strmatch
