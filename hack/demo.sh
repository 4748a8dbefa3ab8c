#!/usr/bin/env bash
# make demo: after `make cluster-up`, install the mesh, deploy a sample app and show mTLS,
# identities, an L4 policy and a waypoint splitting traffic. Each step says what it shows.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${AMBIENT_CLUSTER_STATE:-/tmp/ambient-localcluster}
CP_BIN=${CONTROLPLANE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ambient/controlplane/bin}
BIN=${AMBIENT_BIN_DIR:-$PWD/_output/bin}
export KUBECONFIG=$STATE/kubeconfig
kubectl() { "$CP_BIN/kubectl" "$@"; }
ambientctl() { "$BIN/ambientctl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
n=0
# client SA ARGS...: run the echo client as a pod with that service account; print its summary.
client() {
  local sa=$1; shift
  n=$((n + 1))
  local name="demo-client-$n"
  kubectl -n demo run "$name" --image=ambient/echo:dev --restart=Never \
    --overrides="{\"spec\":{\"serviceAccountName\":\"$sa\",\"nodeSelector\":{\"kubernetes.io/hostname\":\"node1\"}}}" \
    -- client --allow-errors --start-delay 2s "$@" >/dev/null
  for _ in $(seq 1 90); do
    phase=$(kubectl -n demo get pod "$name" -o jsonpath='{.status.phase}')
    { [ "$phase" = Succeeded ] || [ "$phase" = Failed ]; } && break
    sleep 1
  done
  uid=$(kubectl -n demo get pod "$name" -o jsonpath='{.metadata.uid}')
  # The client's JSON summary: ok/total, answers by version and by pod, error samples.
  grep -h '"target"' "$STATE"/nodes/*/pods/demo_"$name"_"$uid"/*.log | tail -1 |
    sed -E 's/"latencyMs":\{[^}]*\},?//; s/^/  /'
}

say "The cluster: real control plane; nodes are network namespaces, pods are processes"
kubectl get nodes -o wide

say "Installing the mesh (istiod-lite + a ztunnel per node) with ambientctl"
ambientctl install --timeout 5m
kubectl -n istio-system get pods -o wide

say "Deploying the sample app: backend v1 x2 and v2 x1 behind one Service"
kubectl apply -f hack/demo/app.yaml >/dev/null
kubectl -n demo rollout status deploy/backend-v1 --timeout=120s
kubectl -n demo rollout status deploy/backend-v2 --timeout=120s
kubectl -n demo get pods -o wide
VIP=$(kubectl -n demo get svc backend -o jsonpath='{.spec.clusterIP}')

say "Before the mesh: the frontend calls the backend Service (plain TCP through kube-proxy)"
client frontend --target "http://backend.demo.svc.cluster.local/" --count 20 --new-conn

say "Enrolling the namespace: a label, no pod restarts"
ambientctl dataplane enroll demo
sleep 2
ambientctl ztunnel-config workloads --node node1 | grep -E 'NAMESPACE|demo'

say "Through the mesh: each connection is carried over HBONE (mTLS, SPIFFE identity per pod)"
client frontend --target "http://$VIP/" --count 20 --new-conn
ZT=$(kubectl -n istio-system get pods -l app=ztunnel -o jsonpath='{.items[0].metadata.name}')
echo "  certificates held by $ZT:"
ambientctl ztunnel-config certificates --node "$(kubectl -n istio-system get pod "$ZT" -o jsonpath='{.spec.nodeName}')" | sed 's/^/    /'
echo "  connections seen by the ztunnels, by client identity (Istio's metric names):"
for z in $(kubectl -n istio-system get pods -l app=ztunnel -o jsonpath='{.items[*].metadata.name}'); do
  kubectl get --raw "/api/v1/namespaces/istio-system/pods/$z:15020/proxy/metrics" |
    grep '^istio_tcp_connections_opened_total' | grep 'reporter="destination"' | grep 'ns/demo' |
    sed -E 's/.*source_principal="([^"]*)".*destination_workload="([^"]*)".* ([0-9]+)$/    \1 -> \2: \3/' || true
done

say "L4 policy: only the frontend's identity may reach the backend"
kubectl apply -f hack/demo/policy.yaml >/dev/null
sleep 2
echo "  as the frontend:"; client frontend --target "http://$VIP/" --count 5 --new-conn
kubectl -n demo create serviceaccount intruder >/dev/null 2>&1 || true
echo "  as another identity (connections are reset by the backend's ztunnel):"; client intruder --target "http://$VIP/" --count 5 --new-conn
kubectl delete -f hack/demo/policy.yaml >/dev/null

say "A waypoint for the namespace, and an HTTPRoute splitting 80/20 between v1 and v2"
if ambientctl waypoint apply -n demo --enroll-namespace --wait --timeout 2m && kubectl apply -f hack/demo/route.yaml >/dev/null; then
  sleep 3
  ambientctl waypoint list -n demo
  client frontend --target "http://$VIP/" --count 100
else
  echo "  the waypoint did not become ready; see kubectl -n demo get gateway,pods"
fi

cat <<MSG

The cluster and the mesh stay up. Explore:
  export KUBECONFIG=$KUBECONFIG PATH=$CP_BIN:$BIN:\$PATH
  kubectl get pods -A -o wide
  ambientctl ztunnel-config workloads --node node1
  ambientctl proxy-status
  ambientctl check
  ls $STATE/nodes/*/pods/        # container logs
  make cluster-down              # remove everything
MSG
