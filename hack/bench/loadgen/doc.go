// Command loadgen is a small HTTP/1.1 load generator for the benchmarks in
// hack/bench.
//
// Fixed-rate, open-loop (the default): -rate requests per second in total,
// spread over -conns keep-alive connections, for -duration. Request i is due
// at start + i/rate whatever happened to earlier ones, and its latency is
// measured from that due time (so a stalled server shows up as latency, not
// as a lower request rate: no coordinated omission). The pacer sleeps with
// nanosleep(2) on its own thread, since the runtime's timers have millisecond
// granularity when the process is idle.
//
// Closed-loop (-max): every connection sends its next request as soon as the
// previous one is answered, for -duration; the result is the maximum rate.
//
// A response counts as an error when the request fails, the status is not
// 200, or (with -size > 0) the body is not -size bytes long.
//
// Output is one line for scripts:
//
//	rps=998.7 requests=9987 errors=0 p50_us=212 p90_us=260 p99_us=410 p999_us=900 max_us=1500
package main
