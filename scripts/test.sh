#!/usr/bin/env bash
# Runs every check and test of the project, as CI does:
#
#   control plane   build (once) the pinned kube-apiserver + etcd
#   tools           install (once) the pinned kubectl, helm and Python SDK venv
#   fmt             cargo fmt --all --check
#   clippy          cargo clippy --workspace --all-targets -- -D warnings
#   cargo test      cargo test --workspace (integration tests start a real apiserver)
#   (the official-SDK tests in tests/python/ run inside cargo test, driven by
#    tests/tests/gateway_python_sdk.rs, which starts the gateway and mocks)
#
# Works non-interactively (CI=true, no stdin) on a fresh machine: everything it
# needs is installed into ${SLUICE_CACHE_DIR:-~/.cache/sluice} by the scripts it
# calls. Extra arguments are passed to `cargo test` (e.g. a test name filter).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

phase_names=()
phase_seconds=()

# run_phase NAME COMMAND... — runs one phase, records its duration, stops on failure.
# (Phase functions check their own commands: `set -e` does not apply inside a
# function whose status is being tested.)
run_phase() {
  local name="$1"; shift
  local start=$SECONDS status=0
  echo "==> $name" >&2
  "$@" || status=$?
  phase_seconds+=($((SECONDS - start)))
  if [[ $status -ne 0 ]]; then
    phase_names+=("$name (FAILED)")
    print_timings
    echo "==> $name failed with exit status $status" >&2
    exit "$status"
  fi
  phase_names+=("$name")
  echo "==> $name: ok ($((SECONDS - start)) s)" >&2
}

print_timings() {
  echo "==> phase timings:" >&2
  local i
  for i in "${!phase_names[@]}"; do
    printf '    %-16s %5d s\n' "${phase_names[$i]}" "${phase_seconds[$i]}" >&2
  done
}

require() {
  command -v "$1" >/dev/null 2>&1 || { echo "test.sh: '$1' is required: $2" >&2; exit 1; }
}

require cargo "install Rust with rustup (rust-version in Cargo.toml or newer)"
cargo fmt --version >/dev/null 2>&1 || { echo "test.sh: rustfmt is missing (rustup component add rustfmt)" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 || { echo "test.sh: clippy is missing (rustup component add clippy)" >&2; exit 1; }

control_plane() {
  SLUICE_CONTROL_PLANE_DIR="$(bash scripts/control-plane.sh)" || return
  export SLUICE_CONTROL_PLANE_DIR
  echo "    control plane binaries: $SLUICE_CONTROL_PLANE_DIR" >&2
}

tools() {
  local exports
  exports="$(bash scripts/tools.sh)" || return
  eval "$exports" || return
  echo "    kubectl: $SLUICE_KUBECTL" >&2
  echo "    helm: $SLUICE_HELM" >&2
  echo "    python venv: $SLUICE_PYTHON_VENV" >&2
}

# cargo_tests — runs the workspace's tests, keeping their output to total the results.
cargo_tests() {
  local status=0
  cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$TEST_LOG" || status=$?
  return "$status"
}

# Prints the plain closing line: the totals of every `test result:` line.
print_totals() {
  awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
       END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$TEST_LOG"
}

run_phase "control plane" control_plane
run_phase "tools" tools
run_phase "fmt" cargo fmt --all --check
run_phase "clippy" cargo clippy --workspace --all-targets -- -D warnings
TEST_LOG="$(mktemp "${TMPDIR:-/tmp}/sluice-test.XXXXXX")"
trap 'rm -f "$TEST_LOG"' EXIT
run_phase "cargo test" cargo_tests "$@"
print_timings
print_totals
