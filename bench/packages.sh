#!/usr/bin/env bash
# Starts and reloads of package-heavy workers, with each kind of memory
# snapshot. Prints figures and ratios; asserts nothing.
#
# For each project: start to first response without a snapshot, from its
# dedicated snapshot, from its packages snapshot (the worker's own file
# edited, its packages unchanged), and from the baseline snapshot; the
# reload after an edit of the worker's own file (save to the swap, from
# pyflare's log); and the size of each snapshot.
#
#   bash bench/packages.sh                    # bench/workers/{django,plotly,fastapi}
#   bash bench/packages.sh path/to/project    # any projects
#
# Each project is copied and synced first (`pyflare sync`, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8796}"

# shellcheck source=bench/lib.sh
. bench/lib.sh

WORK=$(mktemp -d)
LOG="$WORK/log"
cleanup() { [ -n "${PYFLARE_PID:-}" ] && kill "$PYFLARE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

megabytes() { awk -v b="$(stat -c %s "$1" 2>/dev/null || echo 0)" 'BEGIN {printf "%.0f MB", b / 1048576}'; }
stop() { kill "$PYFLARE_PID"; wait "$PYFLARE_PID" 2>/dev/null || true; PYFLARE_PID=""; }
# Waits until a file matching the glob exists (at most 5 minutes).
wait_file() { for _ in $(seq 3000); do compgen -G "$1" >/dev/null && return; sleep 0.1; done; }
# Time from `pyflare dev` to its first successful response; extra arguments follow.
time_start() {
  local t0; t0=$(now_ms)
  "$BIN" dev "$PROJECT" --port "$PORT" --no-reload "$@" >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  wait_up "$PORT"
  echo $(( $(now_ms) - t0 ))
  stop
}
# How many dedicated snapshots the cache holds
# (or refusals, `.nosnap`).
dedicated_count() { ls "$PYFLARE_SNAPSHOT_DIR" | grep -c -E '^[0-9a-f]{32}\.snap(\.nosnap)?$' || true; }
# Serves until the snapshot maker has written the dedicated snapshot of the
# code as it is (at most 2 minutes).
make_dedicated() {
  local before; before=$(dedicated_count)
  "$BIN" dev "$PROJECT" --port "$PORT" --no-reload >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  wait_up "$PORT"
  for _ in $(seq 1200); do [ "$(dedicated_count)" -gt "$before" ] && break; sleep 0.1; done
  stop
}
# A change to the worker's own code that does not change what it does.
touch_code() { echo "# bench edit $(now_ms)" >>"$PROJECT/src/entry.py"; }

bench_project() {
  local name; name=$(basename "$1")
  PROJECT="$WORK/$name"
  export PYFLARE_SNAPSHOT_DIR="$WORK/snapshots-$name"
  cp -r "$1" "$PROJECT"
  rm -rf "$PROJECT/python_modules" "$PROJECT/.pyflare"
  "$BIN" sync "$PROJECT" >/dev/null 2>&1 || { echo "$name: pyflare sync failed; skipped"; return; }
  local size; size=$(du -sm "$PROJECT/python_modules" | cut -f1)

  local none; none=$(time_start --no-snapshot)

  # A live session: the first start's snapshot maker writes the dedicated,
  # baseline and packages snapshots; then edits reload from the standby.
  "$BIN" dev "$PROJECT" --port "$PORT" >"$LOG" 2>&1 &
  PYFLARE_PID=$!
  wait_up "$PORT"
  wait_file "$PYFLARE_SNAPSHOT_DIR/*.base.snap"
  local packages_made=yes
  if [ -e "$PROJECT/python_modules" ]; then
    for _ in $(seq 1200); do
      compgen -G "$PYFLARE_SNAPSHOT_DIR/*.pkgs.snap" >/dev/null && break
      compgen -G "$PYFLARE_SNAPSHOT_DIR/*.pkgs.snap.nosnap" >/dev/null && { packages_made=no; break; }
      sleep 0.1
    done
  fi
  local reloads=""
  for n in 1 2 3; do
    sleep 8 # the standby host for the next reload is prepared meanwhile
    local seen; seen=$(grep -c "reloaded the worker in" "$LOG" || true)
    local t0; t0=$(now_ms)
    touch_code
    until [ "$(grep -c "reloaded the worker in" "$LOG" || true)" -gt "$seen" ]; do sleep 0.01; done
    reloads="$reloads $(( $(now_ms) - t0 ))"
  done
  stop
  local reload; reload=$(echo $reloads | median)

  # Reloads make no dedicated snapshot: a start makes it, the next restores it.
  make_dedicated
  local dedicated; dedicated=$(time_start)
  local dedicated_origin; dedicated_origin=$(grep -o 'started in .*' "$LOG" | head -1)
  touch_code
  local from_packages; from_packages=$(time_start)
  local packages_origin; packages_origin=$(grep -o 'started in .*' "$LOG" | head -1)
  mkdir -p "$WORK/aside"
  mv "$PYFLARE_SNAPSHOT_DIR"/*.pkgs.snap "$WORK/aside/" 2>/dev/null || true
  touch_code
  local from_baseline; from_baseline=$(time_start)
  local baseline_origin; baseline_origin=$(grep -o 'started in .*' "$LOG" | head -1)

  local dedicated_file; dedicated_file=$(ls -t "$PYFLARE_SNAPSHOT_DIR"/*.snap | grep -E '/[0-9a-f]{32}\.snap$' | head -1 || true)
  echo "$name ($size MB of python_modules/):"
  echo "  start, no snapshot:            ${none} ms"
  echo "  start, dedicated snapshot:     ${dedicated} ms (ratio to no snapshot $(ratio "$dedicated" "$none"); ${dedicated_origin})"
  echo "  start, packages snapshot:      ${from_packages} ms (ratio $(ratio "$from_packages" "$none"); ${packages_origin})"
  echo "  start, baseline snapshot:      ${from_baseline} ms (ratio $(ratio "$from_baseline" "$none"); ${baseline_origin})"
  echo "  reload, save to swap:          median ${reload} ms (all:${reloads}; packages snapshot made: $packages_made)"
  echo "  snapshot sizes:                dedicated $(megabytes "$dedicated_file"), packages $(megabytes "$(ls "$WORK"/aside/*.pkgs.snap 2>/dev/null | head -1)"), baseline $(megabytes "$(ls "$PYFLARE_SNAPSHOT_DIR"/*.base.snap | head -1)")"
  rm -rf "$PROJECT" "$PYFLARE_SNAPSHOT_DIR" "$WORK/aside"
}

if [ $# -eq 0 ]; then
  set -- bench/workers/django bench/workers/plotly bench/workers/fastapi
fi
for project in "$@"; do
  bench_project "$project"
done
