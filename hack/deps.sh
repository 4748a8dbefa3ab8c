#!/usr/bin/env bash
# Install the Debian packages a target needs, once and quietly when all is there.
#   hack/deps.sh test      packages the local cluster and the tests need (kube-proxy's nft, conntrack)
#   hack/deps.sh generate  clang/llvm/libbpf-dev for rebuilding the eBPF objects
#   hack/deps.sh bench     stunnel4, nginx, wrk, iperf3 for the benchmark baselines, jq for hack/bench/l4
# Nothing is ever installed by hand: every machine gets what it needs from here.
set -euo pipefail
want=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || want+=("$2")
}
needfile() { # file package
  [ -e "$1" ] || want+=("$2")
}
for set in "${@:-test}"; do
  case $set in
    test)
      need nft nftables
      need conntrack conntrack
      need ip iproute2
      need nsenter util-linux
      need openssl openssl
      need curl curl
      ;;
    generate)
      need clang clang
      need llc llvm
      needfile /usr/include/bpf/bpf_helpers.h libbpf-dev
      ;;
    bench)
      need stunnel4 stunnel4
      need nginx nginx
      need wrk wrk
      need iperf3 iperf3
      need jq jq
      ;;
    *) echo "deps.sh: unknown set '$set' (want test, generate or bench)" >&2; exit 2 ;;
  esac
done
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages ${want[*]}; run as root (or: sudo apt-get install -y ${want[*]})" >&2
  exit 1
fi
echo "deps.sh: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/ambient-update-stamp
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
  apt-get update -qq >/dev/null
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
