#!/usr/bin/env bash
# R2 benchmarks. Prints figures and ratios; asserts nothing.
#
#   - small objects: a request doing one put and one get (13 bytes) through
#     pyflare dev, next to the same Python route in a bare Node+Pyodide+SDK
#     process whose bucket is pyflare's shim over an in-memory Map (the
#     SDK-bound ceiling)
#   - a large object (SIZE_MB, default 1024) streamed in (PUT, request body
#     straight into put) and out (GET, the object's body as the response):
#     MB/s, and the peak RSS of pyflare and of the worker host
#
#   - with R2_S3_URL=s3://bucket/prefix (and the AWS_* settings of an
#     S3-compatible store in the environment), the small put+get also on
#     S3: blobs and the shared metadata object there
#
#   bash bench/r2.sh                  # needs wrk and curl
#   DURATION=30 SIZE_MB=256 bash bench/r2.sh
#   R2_S3_URL=s3://bench/run1 AWS_ENDPOINT_URL=http://127.0.0.1:5000 \
#     AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
#     AWS_ALLOW_HTTP=true bash bench/r2.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
SIZE_MB="${SIZE_MB:-1024}"
PORT="${PORT:-8792}"
BASE_PORT="${BASE_PORT:-8793}"

# shellcheck source=bench/lib.sh
. bench/lib.sh

WORK=$(mktemp -d)
LOG="$WORK/log"
cleanup() { kill "${PYFLARE_PID:-}" "${BASE_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

load() {
  wrk -t2 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$1/" >/dev/null
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/"
}
peak_mb() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }

# 1. Small put+get through pyflare dev.
"$BIN" dev bench/workers/r2 --port "$PORT" --no-reload --persist-to "$WORK/state" >"$LOG" 2>&1 &
PYFLARE_PID=$!
wait_up "$PORT"
SMALL=$(load "$PORT")
kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true

# 1b. The same on S3, when asked.
if [ -n "${R2_S3_URL:-}" ]; then
  PYFLARE_R2_BUCKET_URL="$R2_S3_URL" "$BIN" dev bench/workers/r2 --port "$PORT" --no-reload --persist-to "$WORK/state-s3" >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  wait_up "$PORT"
  SMALL_S3=$(load "$PORT")
  kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true
fi

# 2. The same route, bare, on an in-memory bucket.
"$NODE" bench/ceiling.mjs "$PYODIDE_DIR" "$SDK_DIR" "$BASE_PORT" r2 >/dev/null 2>&1 &
BASE_PID=$!
wait_up "$BASE_PORT"
BASE=$(load "$BASE_PORT")
kill "$BASE_PID"; wait "$BASE_PID" 2>/dev/null || true

echo "R2 put+get (small) via pyflare: $(rps "$SMALL") req/s, p99 $(p99 "$SMALL") (wrk -c$CONNECTIONS, ${DURATION}s)"
echo "same route, bare, in-memory R2: $(rps "$BASE") req/s, p99 $(p99 "$BASE")"
echo "ratio pyflare / bare:           $(ratio "$(rps "$SMALL")" "$(rps "$BASE")")"
if [ -n "${SMALL_S3:-}" ]; then
  echo "R2 put+get (small) on S3:       $(rps "$SMALL_S3") req/s, p99 $(p99 "$SMALL_S3") ($R2_S3_URL)"
fi

# 3. A large object in and out, on a fresh pyflare.
BIG="$WORK/big.bin"
head -c "$((SIZE_MB * 1024 * 1024))" /dev/urandom >"$BIG"
"$BIN" dev bench/workers/r2 --port "$PORT" --no-reload --persist-to "$WORK/state" --max-body-size "$((SIZE_MB + 1))MB" >"$LOG" 2>&1 &
PYFLARE_PID=$!
wait_up "$PORT"
HOST_PID=$(pgrep -P "$PYFLARE_PID" | head -1)
echo "before the large object:        pyflare RSS $(rss_mb "$PYFLARE_PID") MB (peak $(peak_mb "$PYFLARE_PID")), host RSS $(rss_mb "$HOST_PID") MB (peak $(peak_mb "$HOST_PID"))"
t0=$(now_ms)
stored=$(curl -sf -T "$BIG" "http://127.0.0.1:$PORT/big")
t1=$(now_ms)
curl -sf "http://127.0.0.1:$PORT/big" -o "$WORK/back.bin"
t2=$(now_ms)
[ "$stored" = "$((SIZE_MB * 1024 * 1024))" ] || echo "bench: put stored $stored bytes" >&2
cmp -s "$BIG" "$WORK/back.bin" || echo "bench: the object read back differs" >&2
echo "large object in (${SIZE_MB} MiB):   $(awk -v m="$SIZE_MB" -v t=$((t1 - t0)) 'BEGIN {printf "%.0f", m * 1000 / t}') MB/s ($((t1 - t0)) ms)"
echo "large object out (${SIZE_MB} MiB):  $(awk -v m="$SIZE_MB" -v t=$((t2 - t1)) 'BEGIN {printf "%.0f", m * 1000 / t}') MB/s ($((t2 - t1)) ms)"
echo "peak RSS over the run:          pyflare $(peak_mb "$PYFLARE_PID") MB, worker host $(peak_mb "$HOST_PID") MB"
kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true
