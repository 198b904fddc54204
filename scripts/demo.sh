#!/usr/bin/env bash
# The local demo: a real kube-apiserver on loopback with the Sluice CRDs, the
# examples applied, and what `kubectl get` shows for them; then the gateway in
# local mode serving the same examples/ against the mock provider, and a first
# request through it with the official OpenAI Python SDK.
#
#   scripts/demo.sh
#   SLUICE_DEMO_LOCAL_ONLY=1 scripts/demo.sh   # just the gateway part (no etcd/apiserver)
#
# Environment:
#   SLUICE_DEMO_KEEP_RUNNING=1  keep the control plane up after the demo and
#                               print how to reach it (Ctrl-C stops it).
#                               Default: 1 on an interactive terminal, 0 when
#                               CI is set or stdin is not a terminal, in which
#                               case everything is stopped and the script
#                               exits 0 on success.
#   SLUICE_TEST_EXISTING_CLUSTER=1 with KUBECONFIG: use that cluster instead.
#   SLUICE_DEMO_LOCAL_ONLY=1    skip the control plane: only the local-mode
#                               gateway, the mock provider and the request.
#
# Each step is a function listed in STEPS; add new steps (operator, gateway,
# a first request) by writing a function and appending its name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${SLUICE_DEMO_KEEP_RUNNING:-}" ]]; then
  if [[ -t 0 && -z "${CI:-}" ]]; then SLUICE_DEMO_KEEP_RUNNING=1; else SLUICE_DEMO_KEEP_RUNNING=0; fi
fi
# How long the control plane may take to come up (the first run also compiles).
READY_TIMEOUT_SECONDS="${SLUICE_DEMO_READY_TIMEOUT:-180}"

STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")"
CONTROL_PLANE_PID=""
MOCK_PID=""
GATEWAY_PID=""

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "demo: error: $*" >&2; exit 1; }

stop() {
  local pid="$1"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

cleanup() {
  stop "$GATEWAY_PID"
  stop "$MOCK_PID"
  stop "$CONTROL_PLANE_PID"
  rm -rf "$STATE_DIR"
}
trap cleanup EXIT

step_tools() {
  say "Installing pinned tools (kubectl, helm, Python SDKs) and building the demo binaries"
  local exports
  exports="$(bash scripts/tools.sh)"
  eval "$exports"
  cargo build --quiet -p sluice-tests --bin sluice-demo --bin sluice-mock-provider
  cargo build --quiet -p sluice-gateway --bin sluice-gateway
}

step_control_plane() {
  say "Starting kube-apiserver + etcd on loopback and installing the CRDs"
  SLUICE_CONTROL_PLANE_DIR="$(bash scripts/control-plane.sh)"
  export SLUICE_CONTROL_PLANE_DIR
  local env_file="$STATE_DIR/env" log="$STATE_DIR/control-plane.log"
  SLUICE_DEMO_ENV_FILE="$env_file" "$ROOT/target/debug/sluice-demo" >"$log" 2>&1 &
  CONTROL_PLANE_PID=$!
  local waited=0
  until [[ -f "$env_file" ]]; do
    if ! kill -0 "$CONTROL_PLANE_PID" 2>/dev/null; then
      cat "$log" >&2
      die "the control plane exited before it was ready (log above)"
    fi
    if (( waited >= READY_TIMEOUT_SECONDS * 10 )); then
      cat "$log" >&2
      die "the control plane was not ready after ${READY_TIMEOUT_SECONDS}s (log above)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  # shellcheck source=/dev/null
  source "$env_file"
  echo "apiserver: $SLUICE_DEMO_SERVER"
  kubectl get crds -o custom-columns='CRD:.metadata.name,ESTABLISHED:.status.conditions[?(@.type=="Established")].status' \
    | grep -E '^CRD|sluice\.dev'
}

step_examples() {
  say "Applying examples/ (server-side apply)"
  kubectl apply --server-side --field-manager=sluice-demo -f examples/
}

step_show() {
  say "kubectl get llmroutes,virtualkeys,budgets -A"
  kubectl get llmroutes,virtualkeys,budgets -A
}

# Waits until `file` has a line matching `pattern` (the process `pid` must stay up); prints that line.
wait_for_line() {
  local what="$1" pid="$2" file="$3" pattern="$4" waited=0 line
  until line="$(grep -m1 -E "$pattern" "$file" 2>/dev/null)"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$file" >&2
      die "$what exited before it was ready (log above)"
    fi
    if (( waited >= READY_TIMEOUT_SECONDS * 10 )); then
      cat "$file" >&2
      die "$what was not ready after ${READY_TIMEOUT_SECONDS}s (log above)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  printf '%s\n' "$line"
}

step_local_gateway() {
  say "Gateway in local mode over examples/, every provider sent to the mock provider"
  # --lenient: the examples' vLLM backend sends no key, which a keyless vLLM accepts.
  "$ROOT/target/debug/sluice-mock-provider" --listen 127.0.0.1:0 --lenient \
    >"$STATE_DIR/mock.out" 2>"$STATE_DIR/mock.log" &
  MOCK_PID=$!
  local mock
  mock="$(wait_for_line "the mock provider" "$MOCK_PID" "$STATE_DIR/mock.out" '^listening on ')"
  mock="http://${mock#listening on }"
  echo "mock provider: $mock (plays OpenAI, Azure OpenAI, Anthropic, Gemini and vLLM)"
  # The examples name the real endpoints; the overrides point each provider at the mock instead.
  "$ROOT/target/debug/sluice-gateway" --local examples --local-state "$STATE_DIR/local-keys.json" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --local-endpoint-override "openai=$mock/v1" \
    --local-endpoint-override "openai-compatible=$mock/v1" \
    --local-endpoint-override "anthropic=$mock" \
    --local-endpoint-override "gemini=$mock" \
    --local-endpoint-override "azure-openai=$mock" \
    2>"$STATE_DIR/gateway.log" </dev/null &
  GATEWAY_PID=$!
  local listening
  listening="$(wait_for_line "the gateway" "$GATEWAY_PID" "$STATE_DIR/gateway.log" '"message":"listening"')"
  SLUICE_DEMO_GATEWAY="http://$(sed -E 's/.*"addr":"([^"]+)".*/\1/' <<<"$listening")"
  SLUICE_DEMO_ADMIN="http://$(sed -E 's/.*"admin_addr":"([^"]+)".*/\1/' <<<"$listening")"
  local waited=0
  until curl -fsS "$SLUICE_DEMO_ADMIN/readyz" >/dev/null 2>&1; do
    (( waited < READY_TIMEOUT_SECONDS * 10 )) || { cat "$STATE_DIR/gateway.log" >&2; die "the gateway never became ready"; }
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "gateway: $SLUICE_DEMO_GATEWAY (admin: $SLUICE_DEMO_ADMIN)"
  echo "generated virtual keys: $STATE_DIR/local-keys.json"
}

step_first_request() {
  say "A first request with the official OpenAI Python SDK (model chat-default, key team-a-ci)"
  SLUICE_DEMO_GATEWAY="$SLUICE_DEMO_GATEWAY" SLUICE_DEMO_KEYS="$STATE_DIR/local-keys.json" \
    "$SLUICE_PYTHON_VENV/bin/python" - <<'PY'
import json, os
from openai import OpenAI

keys = json.load(open(os.environ["SLUICE_DEMO_KEYS"]))["keys"]
client = OpenAI(base_url=os.environ["SLUICE_DEMO_GATEWAY"] + "/v1", api_key=keys["team-a/team-a-ci"])
raw = client.chat.completions.with_raw_response.create(
    model="chat-default",
    messages=[{"role": "user", "content": "Hello from the Sluice demo"}],
    extra_headers={"x-sluice-debug": "1"},
)
reply = raw.parse()
print("answer:  ", reply.choices[0].message.content)
print("model:   ", reply.model)
print("usage:   ", reply.usage.prompt_tokens, "prompt +", reply.usage.completion_tokens, "completion tokens")
print("route:   ", raw.headers.get("x-sluice-route"), "-> backend", raw.headers.get("x-sluice-backend"))
PY
}

if [[ "${SLUICE_DEMO_LOCAL_ONLY:-0}" == "1" ]]; then
  STEPS=(step_tools step_local_gateway step_first_request)
else
  STEPS=(step_tools step_control_plane step_examples step_show step_local_gateway step_first_request)
fi

for step in "${STEPS[@]}"; do
  "$step"
done

if [[ "$SLUICE_DEMO_KEEP_RUNNING" == "1" ]]; then
  say "Everything keeps running. In another shell:"
  if [[ -n "$CONTROL_PLANE_PID" ]]; then
    echo "    export KUBECONFIG='$KUBECONFIG'"
    echo "    export PATH='$(dirname "$SLUICE_KUBECTL")':\"\$PATH\""
    echo "    kubectl get sluice -A"
  fi
  echo "    export OPENAI_BASE_URL='$SLUICE_DEMO_GATEWAY/v1'"
  echo "    export OPENAI_API_KEY=\"\$(python3 -c 'import json; print(json.load(open(\"$STATE_DIR/local-keys.json\"))[\"keys\"][\"team-a/team-a-ci\"])')\""
  echo "    # then any OpenAI SDK or curl; edit examples/*.yaml and the gateway reloads them"
  echo "Press Ctrl-C to stop it."
  wait "$GATEWAY_PID" || true
else
  say "Demo complete; stopping everything (set SLUICE_DEMO_KEEP_RUNNING=1 to keep it)"
fi
