#!/usr/bin/env bash
# Queues benchmark. Prints figures; asserts nothing.
#
#   - send latency: one `send` of a small JSON message, timed inside the
#     worker (each is a durable SQLite commit), median and p99 of 500
#   - send throughput: requests doing one `send` each (wrk)
#   - end to end at batch size 100: N messages sent with sendBatch (100 a
#     call, 4 clients at once), consumed by a `queue` handler in batches
#     of 100 and acknowledged; messages/s from the first send to the last
#     acknowledgement
#
#   bash bench/queues.sh              # needs wrk and curl
#   MESSAGES=50000 bash bench/queues.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES="${MESSAGES:-20000}"
DURATION="${DURATION:-10}"
PORT="${PORT:-8792}"

command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
# PYFLARE_BIN: a pyflare binary to measure instead of a fresh release build.
BIN="${PYFLARE_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p pyflare
  BIN="$PWD/target/release/pyflare"
fi
"$BIN" setup >/dev/null

WORK=$(mktemp -d)
LOG="$WORK/log"
cleanup() { kill "${PYFLARE_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

now_ms() { date +%s%3N; }
URL="http://127.0.0.1:$PORT"
serve() {
  rm -rf "$WORK/state"
  "$BIN" dev bench/workers/queues --port "$PORT" --no-reload --persist-to "$WORK/state" >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  until curl -sf "$URL/count" >/dev/null 2>&1; do sleep 0.01; done
}
stop_pyflare() { kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true; }
consumed() { curl -s "$URL/count"; }

# 1. Send latency inside the worker, one request at a time.
serve
for _ in $(seq 50); do curl -s "$URL/" >/dev/null; done
for _ in $(seq 500); do curl -s "$URL/"; echo; done | sort -n >"$WORK/latency"
p50=$(awk '{a[NR]=$1} END {print a[int(NR*0.5)]}' "$WORK/latency")
p99=$(awk '{a[NR]=$1} END {print a[int(NR*0.99)]}' "$WORK/latency")
echo "send latency (in the worker):   median ${p50} ms, p99 ${p99} ms (500 sends, one at a time)"

# 2. Requests doing one send each, 8 at once.
wrk -t2 -c8 -d"${DURATION}s" --latency "$URL/" >"$WORK/wrk"
echo "one send per request:           $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk") req/s, p99 $(awk '$1 == "99%" {print $2}' "$WORK/wrk") (wrk -c8, ${DURATION}s)"
stop_pyflare

# 3. End to end at batch size 100.
serve
t0=$(now_ms)
seq $((MESSAGES / 100)) | xargs -P4 -I{} curl -sf -o /dev/null "$URL/batch"
sent=$(now_ms)
until [ "$(consumed)" -ge "$MESSAGES" ]; do sleep 0.01; done
t1=$(now_ms)
echo "end to end, batches of 100:     $((MESSAGES * 1000 / (t1 - t0))) messages/s (${MESSAGES} messages: sent in $((sent - t0)) ms, all acknowledged after $((t1 - t0)) ms)"
echo "producer alone (sendBatch):     $((MESSAGES * 1000 / (sent - t0))) messages/s"
grep -c "QUEUE bench 100/100 ok" "$LOG" | sed 's/^/full batches delivered:         /'
stop_pyflare
