#!/usr/bin/env bash
# Build the local test control plane from the Go module proxy into a cache directory outside the repo:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl (Kubernetes v1.37.2).
# A binary is rebuilt only when go.mod/go.sum (the pins) change; a warm run takes no time.
# Env: CONTROLPLANE_BIN_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/ambient/controlplane/bin).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
BIN_DIR=${CONTROLPLANE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ambient/controlplane/bin}
KUBE_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' go.mod)
KUBE_MINOR=$(echo "$KUBE_VERSION" | cut -d. -f2)
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
mkdir -p "$BIN_DIR"
stamp=$(cat go.mod go.sum | sha256sum | cut -c1-16)
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR -X k8s.io/component-base/version.gitTreeState=clean"
LDF="$LDF -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$KUBE_MINOR"

pkgs=()
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do
  if [ -x "$BIN_DIR/$b" ] && [ "$(cat "$BIN_DIR/.$b.stamp" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  case $b in
    etcd) pkgs+=(go.etcd.io/etcd/server/v3) ;;
    *) pkgs+=("k8s.io/kubernetes/cmd/$b") ;;
  esac
done
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "controlplane: binaries for Kubernetes $KUBE_VERSION are current in $BIN_DIR"
  exit 0
fi
echo "controlplane: building ${#pkgs[@]} binaries for Kubernetes $KUBE_VERSION into $BIN_DIR (a cold build takes ~8 min)"
t0=$SECONDS
tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# One go build for all main packages: shared compilation; the linkers peak near 2.7 GB each,
# which fits this machine class (24 GiB).
go build -trimpath -ldflags="$LDF" -o "$tmp/" "${pkgs[@]}"
[ -f "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd" # go.etcd.io/etcd/server/v3 is package "server"
for f in "$tmp"/*; do
  b=$(basename "$f")
  mv -f "$f" "$BIN_DIR/$b"
  echo "$stamp" >"$BIN_DIR/.$b.stamp"
done
echo "controlplane: built in $((SECONDS - t0))s"
