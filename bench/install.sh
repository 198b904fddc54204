#!/usr/bin/env bash
# Installs the benchmark suite's pinned tools and peers into a cache keyed by version, and prints
# `export` lines for them, so callers can `eval "$(bench/install.sh)"`:
#
#   BENCH_WRK        wrk (Debian)                   closed-loop load at fixed concurrency, max throughput
#   BENCH_NGINX      nginx (Debian, nginx-light)    the cheapest possible mock upstream (fixed bodies)
#   BENCH_OHA        oha 1.16.0 (crates.io)         open-loop load at fixed rates, latency corrected
#   BENCH_PROBE      bench/probe/probe.rs (rustc)   time to first streamed event
#   BENCH_PYTHON     Python venv with matplotlib    the driver and the chart
#   BENCH_LITELLM    LiteLLM 1.106.2 proxy (PyPI)   peer, its own venv, pinned by bench/peers/litellm/requirements.txt
#   BENCH_PORTKEY    Portkey gateway 1.15.2 (npm)   peer, pinned by bench/peers/portkey/package-lock.json
#
# Everything lands under ${SLUICE_CACHE_DIR:-~/.cache/sluice}/bench/. A second run with everything
# cached makes no network access. Progress goes to stderr; only the export lines go to stdout.
# Set BENCH_SKIP_PEERS=1 to install only what the Sluice-vs-direct figures need.
set -euo pipefail

OHA_VERSION="1.16.0"
LITELLM_VERSION="1.106.2"
PORTKEY_VERSION="1.15.2"
MATPLOTLIB_VERSION="3.10.8"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/bench"
mkdir -p "$CACHE_DIR"

log() { echo "bench-install: $*" >&2; }
die() { echo "bench-install: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2)"; }

# Debian packages: wrk, nginx-light, hyperfine (used by humans for quick checks), linux-perf for profiles.
install_debian() {
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  if ((${#missing[@]})); then
    need apt-get "to install ${missing[*]}"
    log "installing ${missing[*]} from Debian"
    local sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
}

install_oha() {
  local root="$CACHE_DIR/oha-$OHA_VERSION"
  if [[ ! -x "$root/bin/oha" ]]; then
    need cargo "to build oha $OHA_VERSION from crates.io"
    log "building oha $OHA_VERSION from crates.io (a few minutes, once)"
    cargo install oha --version "$OHA_VERSION" --locked --root "$root" >&2 || die "cargo install oha failed"
  fi
  echo "$root/bin/oha"
}

install_probe() {
  local source="$ROOT/bench/probe/probe.rs" digest dir
  digest="$(sha256sum "$source" | cut -c1-16)"
  dir="$CACHE_DIR/probe-$digest"
  if [[ ! -x "$dir/probe" ]]; then
    need rustc "to build the probe"
    mkdir -p "$dir"
    rustc --edition 2021 -O -o "$dir/probe.tmp" "$source" >&2 || die "building bench/probe/probe.rs failed"
    mv "$dir/probe.tmp" "$dir/probe"
  fi
  echo "$dir/probe"
}

install_bench_venv() {
  local venv="$CACHE_DIR/venv-matplotlib-$MATPLOTLIB_VERSION"
  if [[ ! -f "$venv/.complete" ]]; then
    need python3 "for the driver"
    log "creating the bench venv (matplotlib $MATPLOTLIB_VERSION)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION" >&2 \
      || die "pip install matplotlib failed"
    touch "$venv/.complete"
  fi
  echo "$venv/bin/python"
}

install_litellm() {
  local requirements="$ROOT/bench/peers/litellm/requirements.txt" digest venv
  digest="$(sha256sum "$requirements" | cut -c1-12)"
  venv="$CACHE_DIR/litellm-$LITELLM_VERSION-$digest"
  if [[ ! -f "$venv/.complete" ]]; then
    log "installing LiteLLM $LITELLM_VERSION into its own venv (about 750 MB, a few minutes, once)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 \
      || die "pip install of the LiteLLM peer failed"
    touch "$venv/.complete"
  fi
  echo "$venv/bin/litellm"
}

install_portkey() {
  local lock="$ROOT/bench/peers/portkey/package-lock.json" digest dir
  digest="$(cat "$ROOT/bench/peers/portkey/package.json" "$lock" | sha256sum | cut -c1-12)"
  dir="$CACHE_DIR/portkey-$PORTKEY_VERSION-$digest"
  if [[ ! -f "$dir/.complete" ]]; then
    need npm "to install the Portkey peer"
    log "installing Portkey gateway $PORTKEY_VERSION (npm ci from the committed lockfile)"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$ROOT/bench/peers/portkey/package.json" "$lock" "$dir/"
    # --ignore-scripts: nothing in this tree needs an install script, and none should run.
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2) || die "npm ci of the Portkey peer failed"
    touch "$dir/.complete"
  fi
  echo "$dir/node_modules/@portkey-ai/gateway/build/start-server.js"
}

install_debian
wrk_bin="$(command -v wrk)"
oha_bin="$(install_oha)"
probe_bin="$(install_probe)"
python_bin="$(install_bench_venv)"
echo "export BENCH_WRK='$wrk_bin'"
echo "export BENCH_NGINX='/usr/sbin/nginx'"
echo "export BENCH_OHA='$oha_bin'"
echo "export BENCH_PROBE='$probe_bin'"
echo "export BENCH_PYTHON='$python_bin'"
if [[ "${BENCH_SKIP_PEERS:-0}" != 1 ]]; then
  echo "export BENCH_LITELLM='$(install_litellm)'"
  echo "export BENCH_PORTKEY='$(install_portkey)'"
fi
