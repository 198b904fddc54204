#!/usr/bin/env bash
# The benchmark suite in one command: installs the pinned load generators and peers (bench/install.sh,
# cached), builds Sluice and the mock provider in release mode, and runs the driver (bench/sluicebench).
#
#   scripts/bench.sh                  full comparison + memory + scale (≈ 20 min), results in target/bench/
#   scripts/bench.sh --quick          smoke run (≈ 3 min)
#   scripts/bench.sh --soak           adds the 1M-request soak
#   scripts/bench.sh --propagation    adds key-revocation propagation (real apiserver + operator + gateways)
#   scripts/bench.sh --profile        adds a perf profile of Sluice under load
#   scripts/bench.sh --all            all of the above
#   scripts/bench.sh --publish ...    also writes docs/benchmarks.md and docs/benchmarks/
#   scripts/bench.sh --help           every option
#
# Everything listens on 127.0.0.1 only. Figures are only meaningful on a quiet machine: the driver
# records the load average and marks results taken under load (--wait-quiet N waits up to N s first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

peers_needed=1
propagation=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --all | --propagation) propagation=1 ;;
    --only-propagation) propagation=1 peers_needed=0 ;;
    --help | -h) peers_needed=0 ;;
    --only-scale) peers_needed=0 ;;
    --targets) [[ "${args[i + 1]:-}" =~ litellm|portkey ]] || peers_needed=0 ;;
    --targets=*) [[ "${args[i]}" =~ litellm|portkey ]] || peers_needed=0 ;;
  esac
done
if ((peers_needed == 0)); then export BENCH_SKIP_PEERS=1; fi

eval "$(bench/install.sh)"
echo "bench: building sluice-gateway and sluice-mock-provider (release)" >&2
cargo build --release -q -p sluice-gateway --bin sluice-gateway -p sluice-tests --bin sluice-mock-provider
if ((propagation)); then
  echo "bench: building sluice-operator (release) and sluice-demo (the control plane launcher)" >&2
  cargo build --release -q -p sluice-operator
  cargo build -q -p sluice-tests --bin sluice-demo
fi
PYTHONPATH="$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}" exec "$BENCH_PYTHON" -m sluicebench "$@"
