#!/usr/bin/env bash
# Metering and budget figures in one command, against a real kube-apiserver (the test harness starts
# one): accounting error, status-update lag and API-server writes per 1,000 requests/s with simulated
# gateways reporting over the real protocol; then budget overshoot with three sluice-gateway processes
# and the usage lost on `kill -9` of a gateway, in front of the mock provider. Loopback only.
#
#   scripts/bench-usage.sh                      ≈ 3 min; Markdown report on stdout and in
#                                               target/bench/usage-<time>.md
#   scripts/bench-usage.sh --rate 5000 --seconds 60   other knobs: see --help
#   PROFILE=dev scripts/bench-usage.sh          debug build (faster to build, same API-side figures)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
out="target/bench/usage-$(date -u +%Y%m%dT%H%M%SZ).md"
mkdir -p target/bench
profile="${PROFILE:-release}"
if [[ "$profile" == release ]]; then
  cargo build --release --quiet -p sluice-tests --bin usage-bench -p sluice-gateway --bin sluice-gateway
  dir="${CARGO_TARGET_DIR:-target}/release"
else
  cargo build --quiet -p sluice-tests --bin usage-bench -p sluice-gateway --bin sluice-gateway
  dir="${CARGO_TARGET_DIR:-target}/debug"
fi
"$dir/usage-bench" --gateway-bin "$dir/sluice-gateway" "$@" | tee "$out"
echo "report: $out" >&2
