#!/usr/bin/env bash
# hack/bench/l4/run.sh — the issue #5 L4 benchmark, in one run (see README.md):
#   direct   client pod → server pod
#   stunnel  client pod → stunnel (node A) → TLS 1.3 mTLS → stunnel (node B) → server pod
#   mesh     client pod → eBPF capture → ztunnel A → HBONE mTLS → ztunnel B → server pod
# on a two-node network-namespace topology it builds itself (ambbench-*, 10.199.0.0/16),
# removed on exit whatever happens. Needs root, iperf3, stunnel4, nginx, jq, openssl, curl.
#
# Environment: L4_SECONDS (per measurement, default 2), L4_ROUNDS (default 3), L4_RATE
# (default 1000 req/s), L4_OUT (results directory, default a new /tmp/ambbench-out.*),
# L4_PROFILE (auto: when a target is missed; always; never), ZTUNNEL / LOADGEN (prebuilt
# binaries; default: built from this tree into the work directory), L4_NICE (run everything
# at this niceness, e.g. -10 on a busy shared machine), L4_HOLD (keep the topology up this
# many seconds before measuring, to poke at it), L4_RT (1, the default: latency runs under
# SCHED_FIFO, see latency(); 0: at normal priority only), L4_ZTUNNEL_ENV (environment for
# both proxies, e.g. GOMAXPROCS=1, for experiments).
set -euo pipefail
if [ -n "${L4_NICE:-}" ] && [ -z "${L4_NICED:-}" ]; then
  L4_NICED=1 exec nice -n "$L4_NICE" bash "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
SECS=${L4_SECONDS:-2}
ROUNDS=${L4_ROUNDS:-3}
RT=${L4_RT:-1}
RATE=${L4_RATE:-1000}
OUT=${L4_OUT:-$(mktemp -d /tmp/ambbench-out.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/ambbench-work.XXXXXX)
NS_A=ambbench-a NS_B=ambbench-b NS_CLI=ambbench-a-client NS_SRV=ambbench-b-server NS_RSS=ambbench-rss
NODE_A=10.199.0.1 NODE_B=10.199.0.2 GW=169.254.1.1
CLI=10.199.1.2 CLI_PLAIN=10.199.1.3 # client pod: mesh (enrolled) and plain addresses
SRV=10.199.2.2 SRV_PLAIN=10.199.2.3 # server pod
PIDS=()

log() { printf '[l4] %s\n' "$*" >&2; }
die() {
  log "FAILED: $*"
  for f in "$WORK"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  exit 1
}

cleanup() {
  local rc=$?
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  for ns in $NS_CLI $NS_SRV $NS_A $NS_B $NS_RSS; do
    [ -e /run/netns/$ns ] || continue
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns"
  done
  for d in "$WORK"/bpf-a "$WORK"/bpf-b; do mountpoint -q "$d" && umount "$d"; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, eBPF)"
for c in iperf3 stunnel4 nginx jq openssl nsenter curl; do
  command -v $c >/dev/null || die "$c missing: run hack/deps.sh bench"
done
for ns in $NS_A $NS_B $NS_CLI $NS_SRV $NS_RSS; do
  [ -e /run/netns/$ns ] && die "netns $ns exists (an earlier run crashed?): ip netns del $ns"
done

# nsx NS CMD...: run in a netns, without ip-netns-exec's private /sys.
nsx() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" "$@"; }
# bg NAME NS CMD...: start a daemon in NS, logging to $WORK/NAME.log; sets PID
# (nsenter execs the command, so PID is the daemon's).
bg() {
  local name=$1 ns=$2; shift 2
  nsenter --net=/run/netns/"$ns" "$@" >"$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
}
# cpu PID...: CPU seconds (user + system, all threads) of the processes so far.
cpu() {
  local tck sum=0 t
  [ $# -gt 0 ] || { echo 0; return; }
  tck=$(getconf CLK_TCK)
  for p in "$@"; do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || die "process $p exited during the benchmark"
    sum=$((sum + t))
  done
  awk -v t=$sum -v h="$tck" 'BEGIN{printf "%.3f", t / h}'
}
rss_mib() { awk '/^VmRSS/{printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
anon_mib() { awk '/^RssAnon/{printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
wait_for() { # WHAT CMD...: up to 15 s
  local what=$1; shift
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what"
}
calc() { awk "BEGIN{printf \"%.${2:-2}f\", $1}"; }
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; } # KEY LINE

# ---------------------------------------------------------------- binaries
ZT=${ZTUNNEL:-}
LG=${LOADGEN:-}
if [ -z "$ZT" ] || [ -z "$LG" ]; then
  log "building ztunnel and loadgen"
  (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags "-s -w" -o "$WORK/bin/" ./ztunnel/cmd/ztunnel ./hack/bench/loadgen) || die "go build"
  ZT=${ZT:-$WORK/bin/ztunnel} LG=${LG:-$WORK/bin/loadgen}
fi

# ---------------------------------------------------------------- topology
# Two nodes joined by a veth (the underlay); one pod per node behind a routed
# veth (/32 routes on the node, the pod's gateway the link-local 169.254.1.1
# on the host side), like the local cluster's CNI. Each pod has two
# addresses: the mesh one (enrolled through the local config) and a plain one
# the capture passes through, so the direct and stunnel runs use the same
# pods, veths and nodes as the mesh runs and the three paths are measured in
# alternation.
log "building the topology"
for ns in $NS_A $NS_B $NS_CLI $NS_SRV; do
  ip netns add $ns
  nsx $ns ip link set lo up
done
for ns in $NS_A $NS_B; do
  nsx $ns sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done
ip link add ambbench-up netns $NS_A type veth peer name eth0 netns $NS_B
nsx $NS_A ip link set ambbench-up name eth0
nsx $NS_A ip addr add $NODE_A/24 dev eth0
nsx $NS_B ip addr add $NODE_B/24 dev eth0
nsx $NS_A ip link set eth0 up
nsx $NS_B ip link set eth0 up
nsx $NS_A ip route add 10.199.2.0/24 via $NODE_B
nsx $NS_B ip route add 10.199.1.0/24 via $NODE_A
pod() { # NODE_NS NODE_IP POD_NS VETH MESH_IP PLAIN_IP
  local node=$1 nodeip=$2 podns=$3 veth=$4 ip=$5 plain=$6
  ip link add $veth netns "$node" type veth peer name eth0 netns "$podns"
  nsx "$node" ip addr add $GW/32 dev $veth
  nsx "$node" ip link set $veth up
  nsx "$podns" ip link set eth0 up
  for a in "$ip" "$plain"; do
    nsx "$node" ip route add "$a"/32 dev $veth scope link src "$nodeip"
    nsx "$podns" ip addr add "$a"/32 dev eth0
  done
  nsx "$podns" ip route add $GW dev eth0 scope link
  nsx "$podns" ip route add default via $GW src "$ip"
}
pod $NS_A $NODE_A $NS_CLI vclient $CLI $CLI_PLAIN
pod $NS_B $NODE_B $NS_SRV vserver $SRV $SRV_PLAIN
# The client reaches the plain server address and its node's stunnel from its
# plain address.
nsx $NS_CLI ip route add $SRV_PLAIN/32 via $GW src $CLI_PLAIN
nsx $NS_CLI ip route add $NODE_A/32 via $GW src $CLI_PLAIN

# ---------------------------------------------------------------- servers
bg iperf3 $NS_SRV iperf3 -s -p 5201
IPERF_SRV=$PID
mkdir -p "$WORK/www" "$WORK/nginx-tmp"
head -c 1024 /dev/zero | tr '\0' x >"$WORK/www/1k"
T=$WORK/nginx-tmp
cat >"$WORK/nginx.conf" <<NGINX
user root;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $T; proxy_temp_path $T; fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;
  keepalive_requests 1000000;
  server { listen 8080; root $WORK/www; }
}
NGINX
bg nginx $NS_SRV nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
NGINX=$PID
wait_for "iperf3 and nginx" nsx $NS_CLI bash -c "exec 3<>/dev/tcp/$SRV_PLAIN/5201 && curl -sf -o /dev/null http://$SRV_PLAIN:8080/1k"

# ---------------------------------------------------------------- stunnel
# One CA (also the mesh's), ECDSA P-256 leaves, TLS 1.3, both sides verify.
log "certificates"
(
  cd "$WORK" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj /O=cluster.local -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature 2>/dev/null || exit 1
  for side in client server; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $side.key -out $side.csr -subj /CN=$side 2>/dev/null || exit 1
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' $side >$side.ext
    openssl x509 -req -in $side.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile $side.ext -out $side.pem 2>/dev/null || exit 1
  done
) || die "openssl"
stunnel_conf() { # SIDE SERVICE ACCEPT CONNECT
  printf '[%s]\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\nsslVersionMin = TLSv1.3\n' \
    "$2" "$3" "$4" "$WORK/$1.pem" "$WORK/$1.key" "$WORK/ca.pem"
  if [ "$1" = client ]; then printf 'client = yes\ncheckHost = server\n'; else printf 'requireCert = yes\n'; fi
}
stunnel_global() { printf 'foreground = yes\npid =\ndebug = 3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n'; }
{
  stunnel_global
  stunnel_conf server iperf $NODE_B:15102 $SRV_PLAIN:5201
  stunnel_conf server http $NODE_B:15103 $SRV_PLAIN:8080
} >"$WORK/stunnel-b.conf"
{
  stunnel_global
  stunnel_conf client iperf $NODE_A:15101 $NODE_B:15102
  stunnel_conf client http $NODE_A:15104 $NODE_B:15103
} >"$WORK/stunnel-a.conf"
bg stunnel-b $NS_B stunnel4 "$WORK/stunnel-b.conf"
ST_B=$PID
bg stunnel-a $NS_A stunnel4 "$WORK/stunnel-a.conf"
ST_A=$PID
wait_for "stunnel" nsx $NS_CLI curl -sf -o /dev/null http://$NODE_A:15104/1k

# ---------------------------------------------------------------- mesh
# Both ztunnels sign with the CA above (--ca=local --ca-cert/--ca-key), read
# the same local config, and capture with eBPF (the capture role per node,
# each with its own bpffs).
printf 'workloads:\n%s\n%s\n' \
  "- {uid: bench/client, name: client, namespace: bench, serviceAccount: client, addresses: [\"$CLI\"], node: $NS_A, protocol: HBONE}" \
  "- {uid: bench/server, name: server, namespace: bench, serviceAccount: server, addresses: [\"$SRV\"], node: $NS_B, protocol: HBONE}" \
  >"$WORK/local.yaml"
ztunnel_node() { # NAME NS NODE_IP: capture role, then proxy role; sets ZPID
  local n=$1 ns=$2 ip=$3
  mkdir -p "$WORK/bpf-$n"
  mount -t bpf bpf "$WORK/bpf-$n"
  bg capture-$n "$ns" "$ZT" --role=capture --node="$ns" --node-ip="$ip" --local-config="$WORK/local.yaml" \
    --bpffs="$WORK/bpf-$n" --notrack=false --uninstall-on-exit --log-level=warn
  # shellcheck disable=SC2086 # L4_ZTUNNEL_ENV is a list of VAR=value
  bg ztunnel-$n "$ns" env ${L4_ZTUNNEL_ENV:-} "$ZT" --role=proxy --node="$ns" --node-ip="$ip" --local-config="$WORK/local.yaml" \
    --ca=local --ca-cert="$WORK/ca.pem" --ca-key="$WORK/ca.key" --bpffs="$WORK/bpf-$n" --log-level=warn
  ZPID=$PID
}
log "starting both ztunnels"
ztunnel_node a $NS_A $NODE_A
ZT_A=$ZPID
ztunnel_node b $NS_B $NODE_B
ZT_B=$ZPID
wait_for "ztunnel A ready" nsx $NS_A curl -sf http://127.0.0.1:15021/healthz/ready
wait_for "ztunnel B ready" nsx $NS_B curl -sf http://127.0.0.1:15021/healthz/ready
wait_for "the client pod to be captured" bash -c "nsenter --net=/run/netns/$NS_A curl -s http://127.0.0.1:15022/config_dump | grep -q '\"$CLI\"'"
wait_for "the server pod to be captured" bash -c "nsenter --net=/run/netns/$NS_B curl -s http://127.0.0.1:15022/config_dump | grep -q '\"$SRV\"'"
sleep 1
RSS_IDLE_A=$(rss_mib $ZT_A) RSS_IDLE_B=$(rss_mib $ZT_B) ANON_IDLE_A=$(anon_mib $ZT_A)
nsx $NS_A curl -s -o "$OUT/ztunnel-a-idle.heap" http://127.0.0.1:15000/debug/pprof/heap || true
opened() { nsx "$1" curl -s http://127.0.0.1:15020/metrics | awk '/^istio_tcp_connections_opened_total/{s += $NF} END{print s + 0}'; }
wait_for "a request through the mesh" nsx $NS_CLI curl -sf -o /dev/null http://$SRV:8080/1k
O_A=$(opened $NS_A) O_B=$(opened $NS_B)
[ "$O_A" -gt 0 ] && [ "$O_B" -gt 0 ] || die "traffic to $SRV did not go through both ztunnels (no istio_tcp_connections_opened_total)"
nsx $NS_CLI curl -sf -o /dev/null http://$SRV_PLAIN:8080/1k || die "direct path broken once capture is on"
nsx $NS_CLI curl -sf -o /dev/null http://$NODE_A:15104/1k || die "stunnel path broken once capture is on"
[ "$(opened $NS_A)" = "$O_A" ] && [ "$(opened $NS_B)" = "$O_B" ] || die "direct or stunnel traffic went through a ztunnel"
log "capture checked: mesh traffic goes through both ztunnels, direct and stunnel traffic through neither"
if [ -n "${L4_HOLD:-}" ]; then
  log "holding for ${L4_HOLD}s: nsenter --net=/run/netns/$NS_CLI ... (mesh $SRV, direct $SRV_PLAIN, stunnel $NODE_A:15101/15104)"
  sleep "$L4_HOLD"
fi

# ---------------------------------------------------------------- measurements
# Every path is measured once per round, in alternation, ROUNDS times; the
# table shows medians (throughput, latency, max rate) and totals (CPU over
# bytes or requests). Raw values: $OUT/raw.tsv (round, path, metric, value).
: >"$OUT/raw.tsv"
rec() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$OUT/raw.tsv"; }
declare -A DST=([direct]=$SRV_PLAIN [stunnel]=$NODE_A [mesh]=$SRV)
declare -A IPERF_PORT=([direct]=5201 [stunnel]=15101 [mesh]=5201)
declare -A HTTP_PORT=([direct]=8080 [stunnel]=15104 [mesh]=8080)
declare -A PROCS=([direct]="" [stunnel]="$ST_A $ST_B" [mesh]="$ZT_A $ZT_B")
iperf() { # PATH STREAMS
  local path=$1 n=$2 c0 c1 s0 s1 f="$OUT/iperf-$1-$2-r$ROUND.json"
  sleep 0.5 # settle after the previous run
  # shellcheck disable=SC2086 # PROCS holds a list of pids
  c0=$(cpu ${PROCS[$path]}) s0=$(cpu $IPERF_SRV)
  nsx $NS_CLI iperf3 -c "${DST[$path]}" -p "${IPERF_PORT[$path]}" -t "$SECS" -P "$n" -J >"$f" || die "iperf3 $path -P $n"
  # shellcheck disable=SC2086
  c1=$(cpu ${PROCS[$path]}) s1=$(cpu $IPERF_SRV)
  rec "$path" cpu_iperf_server "$(calc "$s1 - $s0" 3)"
  rec "$path" "gbps$n" "$(jq '.end.sum_received.bits_per_second / 1e9' "$f")"
  rec "$path" bytes "$(jq '.end.sum_received.bytes' "$f")"
  rec "$path" cpu_bytes "$(calc "$c1 - $c0" 3)"
}
# With L4_RT=1 (the default) latency is measured in a run whose processes
# (loadgen, the proxies of the path, nginx) are SCHED_FIFO, so other work on
# a shared machine does not delay their wake-ups; that run uses little CPU.
# CPU per request is always measured in a second run at normal priority (the
# Go runtime spins more under SCHED_FIFO), whose latency is shown too.
rt() { # fifo|other PID...
  local mode=$1 p t
  shift
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      if [ "$mode" = fifo ]; then chrt -f -p 1 "${t##*/}"; else chrt -o -p 0 "${t##*/}"; fi
    done
  done >/dev/null 2>&1 || true
}
load() { # URL [LOADGEN PREFIX...]: one open-loop run of $SECS
  local url=$1
  shift
  nsx $NS_CLI "$@" "$LG" -url "$url" -conns 4 -rate "$RATE" -duration "${SECS}s" -size 1024
}
record_latency() { # PATH SUFFIX LINE
  echo "$1 r$ROUND$2 $3" >>"$OUT/loadgen.txt"
  [ "$(kv errors "$3")" = 0 ] || die "loadgen $1: $3"
  rec "$1" "p50_us$2" "$(kv p50_us "$3")"
  rec "$1" "p99_us$2" "$(kv p99_us "$3")"
}
latency() { # PATH: loadgen at $RATE req/s over 4 connections, 1 KiB responses
  local path=$1 c0 c1 line url="http://${DST[$1]}:${HTTP_PORT[$1]}/1k" procs
  procs="${PROCS[$path]} $NGINX $(pgrep -P $NGINX | tr '\n' ' ')"
  # Settle after the previous run (proxies flushing buffers), then warm the
  # path (ARP, the pooled HBONE connection) outside the measurement.
  sleep 1
  nsx $NS_CLI "$LG" -url "$url" -conns 4 -rate "$RATE" -duration 500ms -size 1024 >/dev/null || die "loadgen warm-up $path"
  if [ "$RT" = 1 ]; then
    # shellcheck disable=SC2086 # lists of pids
    rt fifo $procs
    line=$(load "$url" chrt -f 1) || die "loadgen $path"
    # shellcheck disable=SC2086
    rt other $procs
    record_latency "$path" "" "$line"
  fi
  # shellcheck disable=SC2086
  c0=$(cpu ${PROCS[$path]})
  line=$(load "$url") || die "loadgen $path"
  # shellcheck disable=SC2086
  c1=$(cpu ${PROCS[$path]})
  if [ "$RT" = 1 ]; then record_latency "$path" _normal "$line"; else record_latency "$path" "" "$line"; fi
  rec "$path" requests "$(kv requests "$line")"
  rec "$path" cpu_req "$(calc "$c1 - $c0" 3)"
}
maxrate() { # PATH: closed-loop rate over 4 connections, for information
  local line
  line=$(nsx $NS_CLI "$LG" -url "http://${DST[$1]}:${HTTP_PORT[$1]}/1k" -conns 4 -max -duration 1s -size 1024) || die "loadgen -max $1"
  echo "$1 r$ROUND max $line" >>"$OUT/loadgen.txt"
  rec "$1" maxrps "$(kv rps "$line")"
}
for ROUND in $(seq "$ROUNDS"); do
  log "round $ROUND/$ROUNDS"
  for p in direct stunnel mesh; do iperf $p 1; done
  for p in direct stunnel mesh; do iperf $p 8; done
  for p in direct stunnel mesh; do latency $p; done
  for p in direct stunnel mesh; do maxrate $p; done
done
RSS_LOAD_A=$(rss_mib $ZT_A) RSS_LOAD_B=$(rss_mib $ZT_B)

# ---------------------------------------------------------------- RSS with 1,000 workloads
# A third proxy (no capture, own netns) whose local config holds 1,000
# workloads behind 100 services on 20 other nodes (none on its own node, so
# no workload certificates): the memory of the mesh state itself.
{
  echo "workloads:"
  for i in $(seq 0 999); do
    echo "- {uid: w/p$i, name: p$i, namespace: ns$((i % 10)), serviceAccount: sa$((i % 50)), addresses: [\"10.199.$((100 + i / 250)).$((i % 250 + 1))\"], node: n$((i % 20)), protocol: HBONE, services: {ns$((i % 10))/s$((i % 100)).ns$((i % 10)).svc.cluster.local: {80: 8080}}}"
  done
  echo "services:"
  for s in $(seq 0 99); do
    echo "- {name: s$s, namespace: ns$((s % 10)), hostname: s$s.ns$((s % 10)).svc.cluster.local, vips: [\"10.199.99.$((s + 1))\"], ports: {80: 8080}}"
  done
} >"$WORK/local-1000.yaml"
ip netns add $NS_RSS
nsx $NS_RSS ip link set lo up
bg ztunnel-rss $NS_RSS "$ZT" --role=proxy --node=rss --local-config="$WORK/local-1000.yaml" --ca=local \
  --ca-cert="$WORK/ca.pem" --ca-key="$WORK/ca.key" --capture=false --log-level=warn
ZT_R=$PID
wait_for "ztunnel (1,000 workloads) ready" nsx $NS_RSS curl -sf http://127.0.0.1:15021/healthz/ready
sleep 1
RSS_1000=$(rss_mib $ZT_R) ANON_1000=$(anon_mib $ZT_R)
N_1000=$(nsx $NS_RSS curl -s "http://127.0.0.1:15000/config_dump?section=workloads" | jq 'if type == "array" then length else (.workloads // . | length) end' 2>/dev/null || echo "?")

# ---------------------------------------------------------------- table
# med PATH METRIC: median over the rounds; sum PATH METRIC: total.
med() {
  awk -F'\t' -v p="$1" -v m="$2" '$2 == p && $3 == m {print $4}' "$OUT/raw.tsv" | sort -g |
    awk '{v[++n] = $1} END {if (n == 0) print "nan"; else print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2}'
}
sum() { awk -F'\t' -v p="$1" -v m="$2" '$2 == p && $3 == m {s += $4} END {printf "%.6f", s}' "$OUT/raw.tsv"; }
for p in direct stunnel mesh; do
  for m in gbps1 gbps8 p50_us p99_us maxrps; do printf -v "M_${p}_$m" '%s' "$(med $p $m)"; done
done
# CPU seconds per GiB received and per 1,000 requests, both proxies together;
# vCPU per proxy at 1,000 req/s = CPU seconds per proxy per 1,000 requests.
per_gib() { calc "$(sum "$1" "${2:-cpu_bytes}") / ($(sum "$1" bytes) / 1073741824)"; }
per_1k() { calc "$(sum "$1" cpu_req) / ($(sum "$1" requests) / 1000)" 3; }
ZT_GIB=$(per_gib mesh) ST_GIB=$(per_gib stunnel)
ZT_1K=$(per_1k mesh) ST_1K=$(per_1k stunnel)
ZT_VCPU=$(calc "$ZT_1K / 2" 3) ST_VCPU=$(calc "$ST_1K / 2" 3)
P50_ADD=$(calc "$M_mesh_p50_us - $M_direct_p50_us" 0) P99_ADD=$(calc "$M_mesh_p99_us - $M_direct_p99_us" 0)
S1=$(calc "$M_mesh_gbps1 / $M_stunnel_gbps1") S8=$(calc "$M_mesh_gbps8 / $M_stunnel_gbps8")
check() { awk "BEGIN{exit !($1)}" && echo ok || echo MISSED; }
row() { printf '%-38s %9s %9s %9s %12s %13s\n' "$@"; }
{
  echo
  echo "L4 benchmark: $ROUNDS rounds of ${SECS}s per measurement, medians; $(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  [ "$RT" = 1 ] && echo "latency under SCHED_FIFO (L4_RT=1): delays from other work on the machine excluded; normal priority below"
  echo
  row "metric" "direct" "stunnel" "mesh" "mesh/direct" "mesh/stunnel"
  row "throughput, 1 stream (Gbit/s)" "$(calc "$M_direct_gbps1")" "$(calc "$M_stunnel_gbps1")" "$(calc "$M_mesh_gbps1")" \
    "$(calc "$M_mesh_gbps1 / $M_direct_gbps1")" "$S1"
  row "throughput, 8 streams (Gbit/s)" "$(calc "$M_direct_gbps8")" "$(calc "$M_stunnel_gbps8")" "$(calc "$M_mesh_gbps8")" \
    "$(calc "$M_mesh_gbps8 / $M_direct_gbps8")" "$S8"
  row "p50 latency, ${RATE}/s over 4 conns (us)" "$M_direct_p50_us" "$M_stunnel_p50_us" "$M_mesh_p50_us" "$(printf '%+d' "$P50_ADD")" \
    "$(calc "$M_mesh_p50_us / $M_stunnel_p50_us")"
  row "p99 latency, ${RATE}/s over 4 conns (us)" "$M_direct_p99_us" "$M_stunnel_p99_us" "$M_mesh_p99_us" "$(printf '%+d' "$P99_ADD")" \
    "$(calc "$M_mesh_p99_us / $M_stunnel_p99_us")"
  if [ "$RT" = 1 ]; then
    for m in p50 p99; do
      a=$(med direct ${m}_us_normal) b=$(med stunnel ${m}_us_normal) c=$(med mesh ${m}_us_normal)
      row "  $m at normal priority (us)" "$a" "$b" "$c" "$(printf '%+d' "$(calc "$c - $a" 0)")" "$(calc "$c / $b")"
    done
  fi
  row "max rate, closed loop, 4 conns (/s)" "$(calc "$M_direct_maxrps" 0)" "$(calc "$M_stunnel_maxrps" 0)" "$(calc "$M_mesh_maxrps" 0)" \
    "$(calc "$M_mesh_maxrps / $M_direct_maxrps")" "$(calc "$M_mesh_maxrps / $M_stunnel_maxrps")"
  row "CPU-s per GiB, both proxies" "-" "$ST_GIB" "$ZT_GIB" "-" "$(calc "$ZT_GIB / $ST_GIB")"
  row "  (iperf3 receiver's own CPU-s/GiB)" "$(per_gib direct cpu_iperf_server)" "$(per_gib stunnel cpu_iperf_server)" \
    "$(per_gib mesh cpu_iperf_server)" "-" "-"
  row "CPU-s per 1,000 requests, both" "-" "$ST_1K" "$ZT_1K" "-" "$(calc "$ZT_1K / $ST_1K")"
  row "vCPU per proxy per 1,000 req/s" "-" "$ST_VCPU" "$ZT_VCPU" "-" "$(calc "$ZT_VCPU / $ST_VCPU")"
  echo
  printf 'ztunnel RSS (MiB): idle A %s (anonymous %s), B %s; after the runs A %s, B %s; %s workloads + 100 services %s (anonymous %s)\n' \
    "$RSS_IDLE_A" "$ANON_IDLE_A" "$RSS_IDLE_B" "$RSS_LOAD_A" "$RSS_LOAD_B" "$N_1000" "$RSS_1000" "$ANON_1000"
  echo
  echo "targets:"
  printf '  %-6s mesh/stunnel throughput >= 1.2x (1 stream %s, 8 streams %s)\n' "$(check "$S1 >= 1.2 && $S8 >= 1.2")" "$S1" "$S8"
  printf '  %-6s both ztunnels <= 1.5 CPU-s/GiB (%s)\n' "$(check "$ZT_GIB <= 1.5")" "$ZT_GIB"
  printf '  %-6s p99 added over direct <= 200 us (%+d)\n' "$(check "$P99_ADD <= 200")" "$P99_ADD"
  printf '  %-6s <= 0.06 vCPU per ztunnel per 1,000 req/s (%s)\n' "$(check "$ZT_VCPU <= 0.06")" "$ZT_VCPU"
  printf '  %-6s idle RSS <= 20 MiB (%s, %s)\n' "$(check "$RSS_IDLE_A <= 20 && $RSS_IDLE_B <= 20")" "$RSS_IDLE_A" "$RSS_IDLE_B"
  echo
  echo "raw values and iperf3/loadgen output: $OUT"
} | tee "$OUT/table.txt"

# ---------------------------------------------------------------- profiles
# Where a target is missed, profile both ztunnels (admin /debug/pprof) during
# a 1-stream and an 8-stream iperf3 run and during an open-loop run.
if [ "${L4_PROFILE:-auto}" = always ] || { [ "${L4_PROFILE:-auto}" = auto ] && grep -q MISSED "$OUT/table.txt"; }; then
  log "profiling both ztunnels"
  prof() { # NAME LOAD...
    local name=$1 pa pb
    shift
    nsx $NS_A curl -s -o "$OUT/ztunnel-a-$name.pprof" "http://127.0.0.1:15000/debug/pprof/profile?seconds=$SECS" &
    pa=$!
    nsx $NS_B curl -s -o "$OUT/ztunnel-b-$name.pprof" "http://127.0.0.1:15000/debug/pprof/profile?seconds=$SECS" &
    pb=$!
    "$@" >/dev/null || true
    wait $pa $pb
  }
  prof throughput nsx $NS_CLI iperf3 -c $SRV -p 5201 -t "$SECS"
  prof throughput8 nsx $NS_CLI iperf3 -c $SRV -p 5201 -t "$SECS" -P 8
  prof requests load http://$SRV:8080/1k
  for f in "$OUT"/ztunnel-*.pprof; do
    echo
    echo "== $(basename "$f"): top by flat CPU"
    (cd "$ROOT" && go tool pprof -top -nodecount=20 "$ZT" "$f" 2>/dev/null | sed -n '5,27p')
  done >"$OUT/profiles.txt"
  log "profiles: $OUT/profiles.txt (and ztunnel-*.pprof for go tool pprof)"
fi
