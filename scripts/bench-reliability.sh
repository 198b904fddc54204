#!/usr/bin/env bash
# Reliability figures in one command: client-visible success and attempt amplification with one backend
# faulty in each of 12 ways, p50/p99 with and without hedging against a slow tail (both in one run), and
# time to failover. Gateway in-process (release build) in front of fault-injecting mock providers on
# loopback; nothing leaves the machine.
#
#   scripts/bench-reliability.sh                 ≈ 1–2 min; Markdown report on stdout and in
#                                                target/bench/reliability-<time>.md
#   scripts/bench-reliability.sh --requests 200  a quicker run (see --help for every knob)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
out="target/bench/reliability-$(date -u +%Y%m%dT%H%M%SZ).md"
mkdir -p target/bench
cargo build --release --quiet -p sluice-tests --bin reliability-bench
"${CARGO_TARGET_DIR:-target}/release/reliability-bench" "$@" | tee "$out"
echo "report: $out" >&2
