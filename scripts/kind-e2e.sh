#!/usr/bin/env bash
# The install path users take, end to end, on a kind cluster:
#
#   1. create a kind cluster (pinned kind and node image)
#   2. build the operator, gateway and mock-provider images (docker/Dockerfile) and load them
#   3. deploy the mock provider and `helm install` charts/sluice (tests/kind/values.yaml) with --wait
#   4. smoke test: a route and a key become Ready, and a chat completion (plain and streamed) goes
#      through the gateway's Service to the mock provider with the provider key from a Secret
#   5. run the end-to-end suite against the cluster:
#      SLUICE_TEST_EXISTING_CLUSTER=1 KUBECONFIG=... cargo test -p sluice-tests
#
# Needs docker, cargo, Go (to install kind if it is missing), npm and python3 (scripts/tools.sh).
# Environment:
#   SLUICE_KIND_CLUSTER   cluster name (default sluice-e2e); an existing cluster is reused
#   SLUICE_KIND_KEEP=1    keep the cluster afterwards (default: delete it if this run created it)
#   SLUICE_E2E_SKIP_SUITE=1  stop after the smoke test
# Extra arguments are passed to `cargo test` (e.g. a test name filter).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KIND_VERSION="v0.31.0"
# The node image kind v0.31.0 was released with (the digest pins an image built for that release).
KIND_NODE_IMAGE="kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"
CLUSTER="${SLUICE_KIND_CLUSTER:-sluice-e2e}"
RELEASE_NAMESPACE="sluice"
E2E_NAMESPACE="sluice-e2e"
IMAGE_TAG="e2e"
CACHE_DIR="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sluice-kind-e2e.XXXXXX")"
KUBECONFIG_PATH="$WORK_DIR/kubeconfig"
CREATED_CLUSTER=0
PORT_FORWARD_PID=""

log() { echo "kind-e2e: $*" >&2; }
die() { echo "kind-e2e: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2)"; }

# On failure: what a person needs to see first. Always: stop the port-forward, delete what we made.
cleanup() {
  local status=$?
  if [[ -n "$PORT_FORWARD_PID" ]]; then kill "$PORT_FORWARD_PID" 2>/dev/null || true; fi
  if [[ $status -ne 0 && -f "$KUBECONFIG_PATH" ]]; then
    log "failed (exit $status); cluster state follows"
    kubectl --kubeconfig "$KUBECONFIG_PATH" get pods,deployments,services -A -o wide >&2 || true
    kubectl --kubeconfig "$KUBECONFIG_PATH" get llmroutes,virtualkeys,budgets -A -o wide >&2 || true
    kubectl --kubeconfig "$KUBECONFIG_PATH" get events -A --sort-by=.lastTimestamp 2>&1 | tail -40 >&2 || true
    for app in operator gateway; do
      kubectl --kubeconfig "$KUBECONFIG_PATH" logs -n "$RELEASE_NAMESPACE" \
        -l "app.kubernetes.io/component=$app" --all-containers --tail=80 --prefix >&2 || true
    done
  fi
  if [[ $CREATED_CLUSTER -eq 1 && "${SLUICE_KIND_KEEP:-0}" != "1" ]]; then
    log "deleting kind cluster $CLUSTER (SLUICE_KIND_KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER" >&2 || true
  elif [[ -f "$KUBECONFIG_PATH" ]]; then
    log "cluster $CLUSTER kept; KUBECONFIG=$KUBECONFIG_PATH"
    return
  fi
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT

need docker "to build the images and run kind"
need cargo "to run the end-to-end suite"
docker info >/dev/null 2>&1 || die "the docker daemon is not reachable"

# Pinned kubectl and helm (and the SDK venv the suite uses).
eval "$(bash scripts/tools.sh)"

# kind: the one on PATH if it is the pinned version, else `go install` it into the cache.
if ! command -v kind >/dev/null 2>&1 || [[ "$(kind version 2>/dev/null | awk '{print $2}')" != "$KIND_VERSION" ]]; then
  KIND_BIN_DIR="$CACHE_DIR/tools/kind-$KIND_VERSION"
  if [[ ! -x "$KIND_BIN_DIR/kind" ]]; then
    need go "to install kind $KIND_VERSION (go install sigs.k8s.io/kind@$KIND_VERSION)"
    log "installing kind $KIND_VERSION"
    GOBIN="$KIND_BIN_DIR" go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
  fi
  export PATH="$KIND_BIN_DIR:$PATH"
fi

# 1. Cluster.
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster $CLUSTER"
else
  log "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 120s >&2
  CREATED_CLUSTER=1
fi
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_PATH"
export KUBECONFIG="$KUBECONFIG_PATH"

# 2. Images: one builder stage, three runtime targets; loaded into the nodes, never pushed.
for target in operator gateway mock-provider; do
  image="sluice-$target:$IMAGE_TAG"
  log "building $image"
  DOCKER_BUILDKIT=1 docker build -f docker/Dockerfile --target "$target" -t "$image" . >&2
  kind load docker-image --name "$CLUSTER" "$image" >&2
done

# 3. Mock provider and the chart. The provider key is random, known only to the two Secrets.
provider_key="sk-e2e-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
kubectl create namespace "$E2E_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl -n "$E2E_NAMESPACE" create secret generic mock-provider-key --from-literal=api-key="$provider_key" \
  --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl -n "$E2E_NAMESPACE" create secret generic provider-keys --from-literal=openai="$provider_key" \
  --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl -n "$E2E_NAMESPACE" apply -f tests/kind/mock-provider.yaml >&2
# --wait as users run it: the gateway pods are Ready once the operator has published (an empty
# configuration counts), so this also proves the two find each other in a real cluster.
log "installing charts/sluice"
helm upgrade --install sluice charts/sluice --namespace "$RELEASE_NAMESPACE" --create-namespace \
  -f tests/kind/values.yaml --wait --timeout 5m >&2
kubectl -n "$E2E_NAMESPACE" rollout status deployment/mock-provider --timeout=120s >&2

# 4. Smoke test through the installed gateway.
kubectl apply --server-side -f tests/kind/smoke.yaml >&2
kubectl -n "$E2E_NAMESPACE" wait --for=condition=Ready llmroute/chat virtualkey/e2e --timeout=120s >&2
secret="$(kubectl -n "$E2E_NAMESPACE" get virtualkey e2e -o jsonpath='{.status.secretName}')"
key="$(kubectl -n "$E2E_NAMESPACE" get secret "$secret" -o jsonpath='{.data.key}' | base64 -d)"
[[ -n "$key" ]] || die "virtual key e2e has no key in Secret $secret"

local_port=18080
kubectl -n "$RELEASE_NAMESPACE" port-forward service/sluice-gateway "$local_port:80" >"$WORK_DIR/port-forward.log" 2>&1 &
PORT_FORWARD_PID=$!
# Any HTTP answer means the port-forward is up.
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$local_port/v1/models" && break
  sleep 0.2
done

# The gateway loads the published configuration within seconds of the key becoming Ready.
for attempt in $(seq 1 30); do
  status="$(curl -sS -o "$WORK_DIR/chat.json" -w '%{http_code}' "http://127.0.0.1:$local_port/v1/chat/completions" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"model": "chat", "messages": [{"role": "user", "content": "hello from kind"}]}' || true)"
  [[ "$status" == "200" ]] && break
  [[ $attempt -eq 30 ]] && die "chat completion answered $status: $(cat "$WORK_DIR/chat.json")"
  sleep 1
done
grep -q '"choices"' "$WORK_DIR/chat.json" || die "not a chat completion: $(cat "$WORK_DIR/chat.json")"
curl -fsS -N "http://127.0.0.1:$local_port/v1/chat/completions" \
  -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"model": "chat", "stream": true, "messages": [{"role": "user", "content": "stream please"}]}' \
  >"$WORK_DIR/stream.txt"
grep -q '^data: \[DONE\]' "$WORK_DIR/stream.txt" || die "the stream did not finish: $(tail -5 "$WORK_DIR/stream.txt")"
status="$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$local_port/v1/chat/completions" \
  -H 'Authorization: Bearer sk-not-a-key' -H 'Content-Type: application/json' \
  -d '{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}')"
[[ "$status" == "401" ]] || die "an unknown key was answered with $status, not 401"
log "smoke test passed: route and key Ready, plain and streamed completions served, unknown key refused"

# 5. The end-to-end suite, against this cluster instead of a local control plane.
if [[ "${SLUICE_E2E_SKIP_SUITE:-0}" == "1" ]]; then
  log "SLUICE_E2E_SKIP_SUITE=1: not running the suite"
  exit 0
fi
log "running the end-to-end suite against kind cluster $CLUSTER"
SLUICE_TEST_EXISTING_CLUSTER=1 KUBECONFIG="$KUBECONFIG_PATH" cargo test -p sluice-tests "$@"
log "done"
