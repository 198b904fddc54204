#!/usr/bin/env bash
# The local demo: a real kube-apiserver on loopback with the Sluice CRDs, the
# examples applied, and what `kubectl get` shows for them.
#
#   scripts/demo.sh
#
# Environment:
#   SLUICE_DEMO_KEEP_RUNNING=1  keep the control plane up after the demo and
#                               print how to reach it (Ctrl-C stops it).
#                               Default: 1 on an interactive terminal, 0 when
#                               CI is set or stdin is not a terminal, in which
#                               case everything is stopped and the script
#                               exits 0 on success.
#   SLUICE_TEST_EXISTING_CLUSTER=1 with KUBECONFIG: use that cluster instead.
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

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "demo: error: $*" >&2; exit 1; }

cleanup() {
  if [[ -n "$CONTROL_PLANE_PID" ]] && kill -0 "$CONTROL_PLANE_PID" 2>/dev/null; then
    kill -TERM "$CONTROL_PLANE_PID" 2>/dev/null || true
    wait "$CONTROL_PLANE_PID" 2>/dev/null || true
  fi
  rm -rf "$STATE_DIR"
}
trap cleanup EXIT

step_tools() {
  say "Installing pinned tools (kubectl, helm) and building the demo binary"
  local exports
  exports="$(bash scripts/tools.sh)"
  eval "$exports"
  SLUICE_CONTROL_PLANE_DIR="$(bash scripts/control-plane.sh)"
  export SLUICE_CONTROL_PLANE_DIR
  cargo build --quiet -p sluice-tests --bin sluice-demo
}

step_control_plane() {
  say "Starting kube-apiserver + etcd on loopback and installing the CRDs"
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

STEPS=(step_tools step_control_plane step_examples step_show)

for step in "${STEPS[@]}"; do
  "$step"
done

if [[ "$SLUICE_DEMO_KEEP_RUNNING" == "1" ]]; then
  say "The control plane keeps running. In another shell:"
  echo "    export KUBECONFIG='$KUBECONFIG'"
  echo "    export PATH='$(dirname "$SLUICE_KUBECTL")':\"\$PATH\""
  echo "    kubectl get sluice -A"
  echo "Press Ctrl-C to stop it."
  wait "$CONTROL_PLANE_PID" || true
else
  say "Demo complete; stopping the control plane (set SLUICE_DEMO_KEEP_RUNNING=1 to keep it)"
fi
