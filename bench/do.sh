#!/usr/bin/env bash
# Durable Object benchmarks (wrk). Prints figures; asserts nothing.
#
#   - RPC calls/s to one object (every call through its input gate)
#   - RPC calls/s spread over 1,000 objects
#   - storage put + get per second (one of each per request, on 100 objects)
#
#   bash bench/do.sh                  # needs wrk and curl
#   DURATION=30 CONNECTIONS=32 bash bench/do.sh
#   PYFLARE_BIN=target/debug/pyflare bash bench/do.sh   # a build at hand, not release
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-8790}"

command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
if [ -n "${PYFLARE_BIN:-}" ]; then
  BIN="$PYFLARE_BIN"
else
  cargo build --release --quiet -p pyflare
  BIN="$PWD/target/release/pyflare"
fi

WORK=$(mktemp -d)
cleanup() { kill "${PYFLARE_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" dev bench/workers/do --port "$PORT" --no-reload --persist-to "$WORK/state" >"$WORK/log" 2>&1 &
PYFLARE_PID=$!
until curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1; do sleep 0.05; done

# Requests/s of wrk on a path, after a 2 s warm-up.
rate() {
  wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT/$1" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/$1" |
    awk '/Requests\/sec/ {rps=$2} /99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%s requests/s, p99 %s%s\n", rps, p99, (bad ? ", " bad " failed" : "")}'
}

echo "RPC to one object:             $(rate one)"
echo "RPC spread over 1,000 objects: $(rate spread)"
echo "storage put + get (100 objs):  $(rate storage)"
echo "objects with storage:          $(ls "$WORK/state/do/Bench" | grep -c 'sqlite3$')"
