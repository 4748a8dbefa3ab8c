// Package client is the echo test app's load client: it sends Count
// requests to one target (tcp://, http://, h2c://, https://, grpc://) with
// bounded concurrency and an optional pace, and sums the answers up in one
// Result (who answered, which versions, which codes, error samples,
// latency percentiles) that end-to-end tests decode from the binary's
// stdout. Parsing the target, aggregating outcomes and computing
// percentiles are pure functions.
package client
