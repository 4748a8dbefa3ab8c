#!/usr/bin/env bash
# L7 benchmark (issue 6): HTTP/1.1, 1 KB answers, on a network-namespace topology made here,
# comparing in one run
#   direct   client → backend v1                                           (plain HTTP)
#   nginx    client → nginx (2 workers, reverse proxy) → v1/v2             (plain HTTP)
#   waypoint client → ztunnel (node1) =HBONE=> waypoint =HBONE=> ztunnel (node2) → v1/v2
# with the same routing in nginx and the waypoint: header end-user: jason → v2, else 90/10.
# For each: max req/s (closed loop), p50/p99 at a fixed rate, and proxy CPU from /proc/<pid>/stat.
#   hack/bench/l7/run.sh        (root; make bench-l7)
# Environment: DURATION (s per load, default 5), ROUNDS (interleaved rounds, default 3), RATE
# (default 1000), CONNS (closed-loop connections, default 32), RATE_CONNS (connections at the
# fixed rate, default 16), BIN (default /tmp/amb/l7-bin), COMPARE=<waypoint binary> adds a
# second waypoint (path "waypoint-b", same routing) measured in the same rounds, e.g. a build
# without a change; PROFILE=<dir> saves CPU profiles of the waypoint and node1's ztunnel;
# KEEP=1 keeps the topology up until Enter;
# NICE=-10 runs every process of the benchmark (all paths alike) at that niceness, to shield
# the figures from other work on the machine; MESH_ENV="GOGC=400 ..." is the environment of the
# ztunnels and waypoints (runtime experiments).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-1000}
CONNS=${CONNS:-32}
RATE_CONNS=${RATE_CONNS:-16}
NICE=${NICE:-0}
read -r -a MESH_ENV <<<"${MESH_ENV:-}"
BIN=${BIN:-/tmp/amb/l7-bin}
P=ambl7-
NSES=(sw client node1 wp node2 nginx)
COMPARE=${COMPARE:-}
[ -n "$COMPARE" ] && NSES+=(wp2)

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }
for c in nginx ip; do command -v $c >/dev/null || { echo "run.sh: $c missing (hack/deps.sh bench)" >&2; exit 1; }; done

WORK=$(mktemp -d /tmp/ambl7.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NSES[@]}"; do ip netns del "$P$n" 2>/dev/null || true; done
  if [ -n "${KEEPLOGS:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build (own directory; _output/bin belongs to the local cluster)
pkgs=(./waypoint/cmd/waypoint ./ztunnel/cmd/ztunnel ./hack/bench/l7/benchca)
LOADGEN=
if [ -d hack/bench/loadgen ] && ls hack/bench/loadgen/*.go >/dev/null 2>&1; then
  pkgs+=(./hack/bench/loadgen); LOADGEN=$BIN/loadgen
elif ! command -v wrk >/dev/null; then
  echo "run.sh: neither hack/bench/loadgen nor wrk (hack/deps.sh bench)" >&2; exit 1
fi
mkdir -p "$BIN"
CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags "-s -w" -o "$BIN/" "${pkgs[@]}"  # as make build

# ---- topology: one bridge in ambl7-sw, every other namespace on it (10.198.0.0/24)
ns() { ip netns exec "$P$1" nice -n "$NICE" "${@:2}"; }
for n in "${NSES[@]}"; do
  ip netns del "$P$n" 2>/dev/null || true
  ip netns add "$P$n"
  ns "$n" ip link set lo up
done
ns sw ip link add br0 type bridge
ns sw ip addr add 10.198.0.1/24 dev br0
ns sw ip link set br0 up
attach() { # ns addr...
  local n=$1; shift
  ip link add eth0 netns "$P$n" type veth peer name "v-$n" netns "${P}sw"
  ns sw ip link set "v-$n" master br0 up
  for a in "$@"; do ns "$n" ip addr add "$a/24" dev eth0; done
  ns "$n" ip link set eth0 up
}
attach client 10.198.0.10
attach node1 10.198.0.11
attach wp 10.198.0.20
attach node2 10.198.0.31 10.198.0.32 # the backend pods' addresses, served by node2's ztunnel
attach nginx 10.198.0.40
[ -n "$COMPARE" ] && attach wp2 10.198.0.21
# Capture stand-in: the client pod's route sends the service range to node1, where the
# reviews VIP is a local address on which ztunnel's outbound listener is bound (so the
# connection's local address is the original destination, as with the eBPF capture).
ns client ip route add 10.198.9.0/24 via 10.198.0.11
ns node1 ip addr add 10.198.9.20/32 dev lo
ns node1 ip addr add 10.198.9.21/32 dev lo # reviews-b (COMPARE)

start() { # name ns command... ; records the pid of the command itself
  local name=$1 n=$2; shift 2
  ip netns exec "$P$n" nice -n "$NICE" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}

# ---- backends: nginx answering 1 KB, with X-Backend naming the version
body=$(head -c 1024 /dev/zero | tr '\0' x)
nginx_common() { # name
  cat <<EOF
pid $WORK/$1.pid;
error_log $WORK/$1.err warn;
events { worker_connections 8192; }
EOF
}
nginx_http() { # name
  cat <<EOF
  access_log off;
  client_body_temp_path $WORK/$1-tmp/body; proxy_temp_path $WORK/$1-tmp/proxy;
  fastcgi_temp_path $WORK/$1-tmp/fcgi; uwsgi_temp_path $WORK/$1-tmp/uwsgi; scgi_temp_path $WORK/$1-tmp/scgi;
  keepalive_requests 1000000; keepalive_timeout 120s;
EOF
}
mkdir -p "$WORK/backend-tmp" "$WORK/proxy-tmp"
cat >"$WORK/backend.conf" <<EOF
$(nginx_common backend)
worker_processes 2;
http {
$(nginx_http backend)
  default_type text/plain;
  server { listen 10.198.0.31:8080; location / { add_header X-Backend v1; return 200 "$body"; } }
  server { listen 10.198.0.32:8080; location / { add_header X-Backend v2; return 200 "$body"; } }
}
EOF
# ---- nginx as the reverse proxy: same routing as the waypoint
cat >"$WORK/proxy.conf" <<EOF
$(nginx_common proxy)
worker_processes 2;
http {
$(nginx_http proxy)
  upstream v1 { server 10.198.0.31:8080; keepalive 64; keepalive_requests 1000000; }
  upstream v2 { server 10.198.0.32:8080; keepalive 64; keepalive_requests 1000000; }
  split_clients "\${request_id}" \$split { 90% v1; * v2; }
  map \$http_end_user \$pool { jason v2; default \$split; }
  server {
    listen 10.198.0.40:8080;
    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
start backend node2 nginx -p "$WORK" -c "$WORK/backend.conf" -g 'daemon off;'
start proxy nginx nginx -p "$WORK" -c "$WORK/proxy.conf" -g 'daemon off;'

# ---- mesh: CA, two ztunnels (local config), the waypoint (local config)
start ca sw "$BIN/benchca" -listen 10.198.0.1:15010
CAFLAGS=(--ca=istiod --ca-address=10.198.0.1:15010)
zt() { # node addr
  echo "$BIN/ztunnel" --role=proxy --capture=false --local-config="$ROOT/hack/bench/l7/ztunnel.yaml" \
    "${CAFLAGS[@]}" --token-file= --node="$1" --log-level=warn --drain-timeout=1s
}
start ztunnel1 node1 env "${MESH_ENV[@]}" $(zt node1) --outbound-addr=0.0.0.0:9080 --inbound-addr=10.198.0.11:15008
start ztunnel2 node2 env "${MESH_ENV[@]}" $(zt node2) --inbound-addr=0.0.0.0:15008
start waypoint wp env "${MESH_ENV[@]}" "$BIN/waypoint" --local-config="$ROOT/hack/bench/l7/waypoint.yaml" "${CAFLAGS[@]}" \
  --root-cert= --name=waypoint --namespace=default --log-level=warn --drain-timeout=1s

# ---- wait for readiness
ready() { # ns url
  local i
  for i in $(seq 100); do
    ns "$1" curl -sf -o /dev/null --max-time 1 "$2" && return 0
    sleep 0.1
  done
  echo "run.sh: $2 in $P$1 not ready; logs:" >&2
  tail -n 20 "$WORK"/*.log "$WORK"/*.err >&2 2>/dev/null || true
  exit 1
}
ready node2 http://10.198.0.31:8080/
ready nginx http://10.198.0.40:8080/
ready node1 http://127.0.0.1:15021/healthz/ready
ready node2 http://127.0.0.1:15021/healthz/ready
ready wp http://127.0.0.1:15021/healthz/ready
PATHS=(direct nginx waypoint)
if [ -n "$COMPARE" ]; then
  start waypointb wp2 env "${MESH_ENV[@]}" "$COMPARE" --local-config="$ROOT/hack/bench/l7/waypoint.yaml" "${CAFLAGS[@]}" \
    --root-cert= --name=waypoint --namespace=default --log-level=warn --drain-timeout=1s
  ready wp2 http://127.0.0.1:15021/healthz/ready
  PATHS+=(waypoint-b)
fi

DIRECT=http://10.198.0.31:8080/
NGINX=http://10.198.0.40:8080/
WAYPOINT=http://10.198.9.20:9080/
WAYPOINTB=http://10.198.9.21:9080/

# ---- routing check: the same split and header match through both proxies
route_check() { # url → "v2 of 200 unmarked, v2 of 20 with end-user: jason"
  local urls=() i
  for i in $(seq 200); do urls+=("$1"); done
  local split jason
  split=$(ns client curl -s --max-time 20 -D - -o /dev/null "${urls[@]}" | grep -ci '^x-backend: v2' || true)
  jason=$(ns client curl -s --max-time 20 -H 'end-user: jason' -D - -o /dev/null "${urls[@]:0:20}" | grep -ci '^x-backend: v2' || true)
  echo "$split $jason"
}

# ---- CPU ticks (utime+stime) of a process and its children (nginx workers)
HZ=$(getconf CLK_TCK)
ticks() { # pid...
  local p t=0 s
  for p in "$@"; do
    for c in $p $(cat /proc/"$p"/task/*/children 2>/dev/null); do
      s=$(cat /proc/"$c"/stat 2>/dev/null) || continue
      s=${s##*) }
      t=$((t + $(echo "$s" | awk '{ print $12 + $13 }')))
    done
  done
  echo $t
}

url_of() { # path → name of its URL variable
  case $1 in direct) echo DIRECT ;; nginx) echo NGINX ;; waypoint) echo WAYPOINT ;; waypoint-b) echo WAYPOINTB ;; esac
}

# load URL CONNS RATE(0 = closed loop) [SECONDS] → "rps p50_us p99_us errors"
load() {
  local d=${4:-$DURATION}
  if [ -n "$LOADGEN" ]; then
    local args=(-url "$1" -conns "$2" -duration "${d}s" -size 1024)
    if [ "$3" = 0 ]; then args+=(-max); else args+=(-rate "$3"); fi
    ns client "$LOADGEN" "${args[@]}" | awk '
      /rps=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
               printf "%.0f %s %s %s\n", v["rps"], v["p50_us"], v["p99_us"], v["errors"] }'
  else
    # wrk fallback (closed loop only; a fixed rate needs loadgen): latency in µs from wrk's Lua.
    [ "$3" = 0 ] || { echo "0 0 0 0"; return; }
    cat >"$WORK/wrk.lua" <<'EOF'
done = function(s, lat, req)
  io.write(string.format("WRK %.0f %d %d %d\n", s.requests / (s.duration / 1e6), lat:percentile(50), lat:percentile(99),
    s.errors.connect + s.errors.read + s.errors.write + s.errors.status + s.errors.timeout))
end
EOF
    ns client wrk -t 2 -c "$2" -d "${d}s" -s "$WORK/wrk.lua" "$1" | awk '/^WRK/ { print $2, $3, $4, $5 }'
  fi
}

vcpu() { # ticks seconds → vCPU
  awk -v t="$1" -v hz="$HZ" -v s="$2" 'BEGIN { printf "%.3f", t / hz / s }'
}

# measure NAME MODE URL "PROXY PIDS" "OTHER PIDS" → appends to $WORK/NAME.MODE one line
#   rps p50 p99 errors proxy_vcpu other_vcpu
measure() {
  local name=$1 mode=$2 url=$3 a0 a1 b0 b1 out
  local rate=0 conns=$CONNS
  [ "$mode" = fixed ] && { rate=$RATE; conns=$RATE_CONNS; }
  # CPU over the load's duration: the proxies are idle before and after it
  a0=$(ticks $4); b0=$(ticks $5)
  out=$(load "$url" "$conns" "$rate")
  a1=$(ticks $4); b1=$(ticks $5)
  echo "$out $(vcpu $((a1 - a0)) "$DURATION") $(vcpu $((b1 - b0)) "$DURATION")" >>"$WORK/$name.$mode"
}

# median of column COL of FILE
median() {
  sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

echo "== L7 benchmark: HTTP/1.1 GET, 1 KB answers; $ROUNDS interleaved rounds of ${DURATION}s loads; medians"
echo "   closed loop: $CONNS connections; fixed rate: $RATE req/s over $RATE_CONNS connections"
echo "   loadgen: ${LOADGEN:-wrk (fallback: no fixed-rate latency)}; $(nproc) CPUs shared by every process; nice $NICE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
read -r ns_split ns_jason <<<"$(route_check "$NGINX")"
read -r wp_split wp_jason <<<"$(route_check "$WAYPOINT")"
echo "   routing check (v2 answers): nginx $ns_split/200 unmarked, $ns_jason/20 end-user: jason; waypoint $wp_split/200, $wp_jason/20"
for v in "$ns_split $ns_jason" "$wp_split $wp_jason"; do
  read -r sp ja <<<"$v"
  if [ "$ja" != 20 ] || [ "$sp" -lt 5 ] || [ "$sp" -gt 40 ]; then # 90/10 of 200: 20 ± 3.5 sd
    echo "run.sh: routing differs from header match → v2, else 90/10; not measuring" >&2; exit 1
  fi
done
for p in "${PATHS[@]}"; do u=$(url_of $p); load "${!u}" 4 0 1 >/dev/null; done # warm: connections, pools, certificates
PROXY_direct=$PID_backend OTHER_direct=
PROXY_nginx=$PID_proxy OTHER_nginx=
PROXY_waypoint=$PID_waypoint OTHER_waypoint="$PID_ztunnel1 $PID_ztunnel2"
PROXY_waypoint_b=${PID_waypointb:-} OTHER_waypoint_b="$PID_ztunnel1 $PID_ztunnel2"
for r in $(seq "$ROUNDS"); do
  for p in "${PATHS[@]}"; do
    u=$(url_of $p)
    pp=PROXY_${p/-/_} op=OTHER_${p/-/_}
    measure $p max "${!u}" "${!pp}" "${!op}"
    measure $p fixed "${!u}" "${!pp}" "${!op}"
  done
done

echo
# best of the rounds: the least disturbed by other work on the machine (highest rate, lowest p99)
best() { # file col max|min
  awk -v c="$2" -v m="$3" 'NR == 1 || (m == "max" && $c > b) || (m == "min" && $c < b) { b = $c } END { print b }' "$1"
}

echo "path      | max req/s      | at $RATE/s p50 µs  p99 µs         | errors | proxy vCPU     | proxy CPU µs/req | ztunnels vCPU"
echo "          | median    best |            median  median    best | all    | at max  at rate| at max   at rate | at max  at rate"
for p in "${PATHS[@]}"; do
  for m in max fixed; do
    for c in 1 2 3 4 5 6; do eval "${m}_$c=\$(median \"$WORK/$p.$m\" $c)"; done
  done
  bmax=$(best "$WORK/$p.max" 1 max)
  bp99=$(best "$WORK/$p.fixed" 3 min)
  errs=$(cat "$WORK/$p.max" "$WORK/$p.fixed" | awk '{ e += $4 } END { print e }')
  per=$(awk -v c="$max_5" -v r="$max_1" 'BEGIN { if (r > 0) printf "%.0f", c / r * 1e6; else print "-" }')
  perf=$(awk -v c="$fixed_5" -v r="$fixed_1" 'BEGIN { if (r > 0) printf "%.0f", c / r * 1e6; else print "-" }')
  zt="-"; [ "${p%-b}" = waypoint ] && zt="$max_6   $fixed_6"
  printf '%-10s| %6s %7s |     %9s %7s %7s | %6s | %6s %7s | %6s %9s | %s\n' "$p" "$max_1" "$bmax" "$fixed_2" "$fixed_3" "$bp99" "$errs" "$max_5" "$fixed_5" "$per" "$perf" "$zt"
  eval "M_${p/-/_}=\"$max_1 $fixed_3 $fixed_5 $fixed_1 $bmax $bp99 $per\""
done
echo "   proxy = direct: the backend nginx; nginx: the proxy nginx (master + 2 workers); waypoint: the waypoint alone"
[ -n "$COMPARE" ] && echo "   waypoint-b = $COMPARE (same topology and routing, second waypoint)"
echo "   per round (rps p50 p99 errors proxy_vcpu ztunnel_vcpu):"
for p in "${PATHS[@]:1}"; do for m in max fixed; do echo "     $p $m: $(paste -sd'|' "$WORK/$p.$m")"; done; done
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

read -r n_rps n_p99 _ _ n_brps n_bp99 n_per <<<"$M_nginx"
read -r w_rps w_p99 w_cpu w_frps w_brps w_bp99 w_per <<<"$M_waypoint"
echo
echo "== targets (waypoint path vs nginx; median of rounds, best of rounds)"
awk -v w="$w_rps" -v n="$n_rps" -v bw="$w_brps" -v bn="$n_brps" 'BEGIN { r = (n > 0) ? w / n : 0; b = (bn > 0) ? bw / bn : 0
  printf "   max req/s ratio            %.2f / %.2f  (target >= 0.80) %s\n", r, b, (r >= 0.8) ? "met" : "MISSED" }'
awk -v w="$w_p99" -v n="$n_p99" -v bw="$w_bp99" -v bn="$n_bp99" 'BEGIN { if (n + 0 == 0) { print "   p99 ratio: n/a (needs loadgen)"; exit } r = w / n; b = bw / bn
  printf "   p99 at fixed rate ratio    %.2f / %.2f  (target <= 1.5)  %s\n", r, b, (r <= 1.5) ? "met" : "MISSED" }'
awk -v c="$w_cpu" -v r="$w_frps" 'BEGIN { if (r + 0 == 0) { print "   waypoint vCPU per 1000 req/s: n/a (needs loadgen)"; exit } v = c / r * 1000
  printf "   waypoint vCPU per 1,000/s  %.3f        (target <= 0.25) %s\n", v, (v <= 0.25) ? "met" : "MISSED" }'
awk -v w="$w_per" -v n="$n_per" 'BEGIN { if (n + 0 > 0) printf "   CPU per request at max: waypoint %s µs, nginx %s µs (%.1fx; steadier than req/s on a shared machine)\n", w, n, w / n }'
if [ -n "$COMPARE" ]; then
  read -r b_rps b_p99 b_cpu b_frps _ _ _ <<<"$M_waypoint_b"
  awk -v w="$w_rps" -v b="$b_rps" -v wp="$w_p99" -v bp="$b_p99" -v wc="$w_cpu" -v bc="$b_cpu" 'BEGIN {
    printf "   waypoint / waypoint-b: max req/s %.2f, p99 %.2f, vCPU at the fixed rate %.2f\n", w / b, wp / bp, wc / bc }'
fi
if [ -n "${PROFILE:-}" ]; then # CPU profiles of the waypoint and node1's ztunnel, closed loop and fixed rate
  mkdir -p "$PROFILE"
  for mode in max fixed; do
    ns wp curl -s -o "$PROFILE/waypoint-$mode.pprof" "http://127.0.0.1:15000/debug/pprof/profile?seconds=$((DURATION - 2))" &
    c1=$!
    ns node1 curl -s -o "$PROFILE/ztunnel1-$mode.pprof" "http://127.0.0.1:15000/debug/pprof/profile?seconds=$((DURATION - 2))" &
    c2=$!
    if [ $mode = max ]; then load "$WAYPOINT" "$CONNS" 0; else load "$WAYPOINT" "$RATE_CONNS" "$RATE"; fi >/dev/null
    wait $c1 $c2
  done
  echo "profiles in $PROFILE (go tool pprof -top $BIN/waypoint $PROFILE/waypoint-max.pprof)"
fi
if [ -n "${KEEP:-}" ]; then echo "topology up (namespaces $P*, logs $WORK); press Enter to tear down"; read -r _; fi
