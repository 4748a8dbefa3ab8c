#!/usr/bin/env bash
# make demo: after `make cluster-up`, deploy the sample app and show it working.
# The mesh steps (install, enroll, policy, waypoint) join here as their parts land.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${AMBIENT_CLUSTER_STATE:-/tmp/ambient-localcluster}
CP_BIN=${CONTROLPLANE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ambient/controlplane/bin}
export KUBECONFIG=$STATE/kubeconfig
kubectl() { "$CP_BIN/kubectl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "The cluster: real control plane, nodes are network namespaces, pods are processes"
kubectl get nodes -o wide

say "Deploying the sample app (backend v1 x2, v2 x1 behind one Service)"
kubectl apply -f hack/demo/app.yaml
kubectl -n demo rollout status deploy/backend-v1 --timeout=120s
kubectl -n demo rollout status deploy/backend-v2 --timeout=120s
kubectl get pods -A -o wide

say "A client pod calls the backend Service 30 times (through kube-proxy; no mesh yet)"
VIP=$(kubectl -n demo get svc backend -o jsonpath='{.spec.clusterIP}')
kubectl -n demo delete pod demo-client --ignore-not-found --wait=true >/dev/null
kubectl -n demo run demo-client --image=ambient/echo:dev --restart=Never \
  --overrides='{"spec":{"serviceAccountName":"frontend"}}' -- client --target "http://$VIP/" --count 30 --new-conn >/dev/null
for _ in $(seq 1 60); do
  phase=$(kubectl -n demo get pod demo-client -o jsonpath='{.status.phase}')
  [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
  sleep 1
done
uid=$(kubectl -n demo get pod demo-client -o jsonpath='{.metadata.uid}')
grep -h '"target"' "$STATE"/nodes/*/pods/demo_demo-client_"$uid"/client.log | tail -1

cat <<MSG

The cluster stays up. Explore it:
  export KUBECONFIG=$KUBECONFIG
  export PATH=$CP_BIN:\$PATH
  kubectl get pods -A -o wide
  ls $STATE/nodes/*/pods/        # container logs
  make cluster-down              # remove everything
MSG
