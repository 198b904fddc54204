#!/usr/bin/env bash
# Gateway overhead in one command: added latency (p50/p99), time to first streamed byte and throughput
# through Sluice versus straight to the same mock upstream, streaming and not, at concurrency 1 and 64.
#
#   scripts/bench-gateway.sh              ≈ 4 min; results in target/bench/<time>/results.md
#   scripts/bench-gateway.sh --publish    also writes them into docs/benchmarks.md
#   scripts/bench-gateway.sh --quick      smoke run
#
# This is the Sluice-versus-direct slice of the full suite (scripts/bench.sh, bench/): the same pinned load
# generators (wrk from Debian, oha 1.16.0 from crates.io), the same mocks (nginx with a fixed completion,
# `sluice-mock-provider --fixed` for streams), release builds, no peers and no memory or scale phases.
# Extra arguments go to the suite (`scripts/bench.sh --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$ROOT/scripts/bench.sh" --targets direct,sluice --no-memory --no-scale "$@"
