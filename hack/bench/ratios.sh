#!/usr/bin/env bash
# Runs each data-path benchmark next to its baseline in the same run and prints the ratio.
# Baselines are measured here, now, on this machine: direct TCP for HBONE and ztunnel,
# direct HTTP for the waypoint. (Peers such as stunnel and nginx: see hack/bench/README.md.)
#   hack/bench/ratios.sh [benchtime]     (default 2s; e.g. 5s for steadier numbers)
set -euo pipefail
cd "$(dirname "$0")/../.."
BT=${1:-2s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { # package regexp
  go test -run '^$' -bench "$2" -benchtime "$BT" -count 1 "$1" 2>&1 | tee -a "$out" | grep -E '^Benchmark' || true
}
echo "== benchmarks (benchtime $BT)"
run ./pkg/hbone/ 'ThroughputDirectTCP|ThroughputHBONE|StreamOpenWarm|IdleStreamMemory|Handshake'
run ./ztunnel/proxy/ 'DirectThroughput|OutboundInboundThroughput|ConnectionRate|DirectConnectionRate'
run ./waypoint/listener/ 'HTTP1Direct|HTTP1HBONEOnly|HTTP1ThroughWaypoint'

# metric BENCH UNIT: the value reported in UNIT by benchmark BENCH (first match).
metric() {
  awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i+1) == u) { print $i; exit } }' "$out"
}
ratio() { # label num den unit [invert]
  local n d
  n=$(metric "$2" "$4"); d=$(metric "$3" "$4")
  if [ -z "$n" ] || [ -z "$d" ]; then printf '  %-48s n/a\n' "$1"; return; fi
  if [ "${5:-}" = invert ]; then
    awk -v n="$n" -v d="$d" -v l="$1" 'BEGIN { printf "  %-48s %.2fx  (%s vs %s)\n", l, d / n, n, d }'
  else
    awk -v n="$n" -v d="$d" -v l="$1" 'BEGIN { printf "  %-48s %.2fx  (%s vs %s)\n", l, n / d, n, d }'
  fi
}
echo
echo "== ratios against the baselines measured above (higher is better)"
ratio "HBONE stream throughput / direct TCP" BenchmarkThroughputHBONE BenchmarkThroughputDirectTCP MB/s
ratio "ztunnel pair throughput / direct TCP" BenchmarkOutboundInboundThroughput BenchmarkDirectThroughput MB/s
ratio "ztunnel pair connection rate / direct" BenchmarkConnectionRate BenchmarkDirectConnectionRate ns/op invert
ratio "waypoint HTTP/1.1 req rate / direct" BenchmarkHTTP1ThroughWaypoint BenchmarkHTTP1Direct ns/op invert
ratio "waypoint req rate / HBONE-only path" BenchmarkHTTP1ThroughWaypoint BenchmarkHTTP1HBONEOnly ns/op invert
