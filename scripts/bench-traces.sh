#!/usr/bin/env bash
# What OpenTelemetry tracing costs the gateway: CPU time per request with traces off and with traces on
# (exporting to a local OTLP/HTTP sink), optionally against an older gateway binary with no trace code.
#
#   scripts/bench-traces.sh                          3 interleaved rounds of 10 s per variant
#   scripts/bench-traces.sh --baseline OLD_BINARY    also the same load on an older sluice-gateway
#   scripts/bench-traces.sh --rounds 5 --duration 20
#   scripts/bench-traces.sh --no-build               use the release binaries already in target/release
#
# Release builds of sluice-gateway and sluice-mock-provider (`--fixed`, the cheapest upstream); wrk from
# Debian (apt-get install wrk) drives 8 connections of non-streaming chat completions. The gateway is
# pinned to CPU 1 and wrk to CPU 0 (`taskset`); the figure is the gateway process's user+system CPU time
# (/proc/PID/stat) divided by the requests wrk completed, so it does not depend on how busy the machine is
# as much as latency would. Default logging (JSON access lines at info), as in production. Prints one line
# per run and a summary (median per variant).
set -Eeuo pipefail
trap 'echo "bench-traces: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3
DURATION=10
BASELINE=""
BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --baseline) BASELINE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n "2,15p" "$0"; exit 0 ;;
    *) echo "bench-traces: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench-traces: wrk is required (apt-get install wrk)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench-traces: taskset is required (util-linux)" >&2; exit 1; }

cd "$ROOT"
if [[ "$BUILD" == 1 ]]; then
  cargo build --quiet --release -p sluice-gateway --bin sluice-gateway -p sluice-tests --bin sluice-mock-provider
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-traces.XXXXXX")"
GATEWAY="$ROOT/target/release/sluice-gateway"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { # file pattern
  local waited=0
  until grep -q "$2" "$1" 2>/dev/null; do
    (( waited++ < 300 )) || { echo "bench-traces: timed out waiting for $1" >&2; exit 1; }
    sleep 0.1
  done
}

"$ROOT/target/release/sluice-mock-provider" --listen 127.0.0.1:0 --fixed >"$WORK/mock.out" 2>/dev/null &
PIDS+=($!)
wait_for "$WORK/mock.out" '^listening on'
MOCK="$(sed -n 's/^listening on //p' "$WORK/mock.out")"

# The OTLP/HTTP sink: accepts every export, counts them, answers 200 like a collector.
cat >"$WORK/sink.py" <<'PY'
import http.server, sys, threading
count, lock = 0, threading.Lock()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            count += 1
            open(sys.argv[1], "w").write(str(count))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$WORK/sink.py" "$WORK/exports" >"$WORK/sink.out" 2>/dev/null &
PIDS+=($!)
wait_for "$WORK/sink.out" '^listening on'
SINK="$(sed -n 's/^listening on //p' "$WORK/sink.out")"

mkdir -p "$WORK/manifests"
cat >"$WORK/manifests/bench.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: bench}
stringData: {provider: sk-bench-provider-key, client: sk-sluice-bench-client-key-0123456789abcdef}
---
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {name: chat, namespace: bench}
spec:
  model: gpt-4o
  backends:
    - {name: mock, provider: openai, model: gpt-4o, endpoint: "http://$MOCK/v1", credentialsRef: {name: keys, key: provider}}
---
apiVersion: sluice.dev/v1alpha1
kind: VirtualKey
metadata: {name: bench, namespace: bench}
spec: {secretRef: {name: keys, key: client}}
YAML
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-sluice-bench-client-key-0123456789abcdef"
wrk.body = '{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello in five words please"}]}'
LUA

CLK="$(getconf CLK_TCK)"
cpu_ticks() { local stat; read -r -a stat <"/proc/$1/stat"; echo $(( stat[13] + stat[14] )); }

# One run: start the variant, warm up 2 s, measure DURATION s, stop; appends "variant us_per_request".
run() {
  local variant="$1" binary="$GATEWAY" extra=()
  [[ "$variant" == baseline ]] && binary="$BASELINE"
  [[ "$variant" == on ]] && extra=(--otlp-endpoint "http://$SINK")
  # Short batch delay and a large queue, so traces-on exports (nearly) every span instead of dropping.
  OTEL_BSP_SCHEDULE_DELAY=200 OTEL_BSP_MAX_QUEUE_SIZE=65536 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4096 \
    taskset -c 1 "$binary" --local "$WORK/manifests" --local-state "$WORK/state.json" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json "${extra[@]}" 2>"$WORK/gateway.log" &
  local pid=$!
  PIDS+=("$pid")
  local waited=0
  until grep -q '"message":"listening"' "$WORK/gateway.log" 2>/dev/null; do
    (( waited++ < 300 )) || { cat "$WORK/gateway.log" >&2; exit 1; }
    sleep 0.1
  done
  local api
  api="$(sed -n -E '/"message":"listening"/{s/.*"addr":"([^"]+)".*/\1/p;q;}' "$WORK/gateway.log")"
  local url="http://$api/v1/chat/completions"
  local code=""
  until [[ "$code" == 200 ]]; do
    code="$(curl -s --max-time 20 -o "$WORK/ready.json" -w '%{http_code}' -X POST "$url" \
      -H 'Authorization: Bearer sk-sluice-bench-client-key-0123456789abcdef' -H 'Content-Type: application/json' \
      -d '{"model":"gpt-4o","messages":[{"role":"user","content":"ready?"}]}' || true)"
    (( waited++ < 600 )) || {
      echo "bench-traces: $variant never answered 200 (last: $code $(cat "$WORK/ready.json" 2>/dev/null))" >&2
      tail -5 "$WORK/gateway.log" >&2
      exit 1
    }
    [[ "$code" == 200 ]] || sleep 0.1
  done
  taskset -c 0 wrk -t1 -c8 -d2s -s "$WORK/post.lua" "$url" >/dev/null
  local before after out requests errors
  before="$(cpu_ticks "$pid")"
  out="$(taskset -c 0 wrk -t1 -c8 -d"${DURATION}s" -s "$WORK/post.lua" "$url")"
  if ! after="$(cpu_ticks "$pid")"; then
    echo "bench-traces: the $variant gateway exited during the load; its log:" >&2
    tail -20 "$WORK/gateway.log" >&2
    exit 1
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  errors="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  awk -v v="$variant" -v r="$requests" -v t="$((after - before))" -v clk="$CLK" -v d="$DURATION" -v e="${errors:-0}" \
    'BEGIN { printf "%-8s requests=%-7d rps=%-6.0f gateway_cpu_s=%-6.2f cpu_us_per_request=%.1f non_2xx=%s\n", v, r, r/d, t/clk, t/clk*1e6/r, e }' \
    | tee -a "$WORK/results"
}

VARIANTS=(off on)
[[ -n "$BASELINE" ]] && VARIANTS=(baseline off on)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  order=("${VARIANTS[@]}")
  # Every other round in reverse, so no variant always runs first (or right after another).
  if (( round % 2 == 0 )); then
    order=()
    for (( i = ${#VARIANTS[@]} - 1; i >= 0; i-- )); do order+=("${VARIANTS[i]}"); done
  fi
  for variant in "${order[@]}"; do run "$variant"; done
done
echo
echo "median CPU µs per request (gateway process), $ROUNDS rounds of ${DURATION}s, c=8, non-streaming:"
for variant in "${VARIANTS[@]}"; do
  grep "^$variant " "$WORK/results" | sed -E 's/.*cpu_us_per_request=([0-9.]+).*/\1/' | sort -n \
    | awk -v v="$variant" '{a[NR]=$1} END {printf "  %-8s %.1f  (runs: %d)\n", v, (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2), NR}'
done
echo "  OTLP export requests received by the sink: $(cat "$WORK/exports" 2>/dev/null || echo 0)"
