// Faults a worker cannot recover from by itself, detected as workerd
// detects them:
//
// - a fatal Pyodide error (`os._exit()`, a crash inside the interpreter):
//   Pyodide can no longer be used, so the isolate is given up, as workerd
//   aborts the isolate from Pyodide's `on_fatal` hook
//   (https://github.com/cloudflare/workerd/blob/6552d999c79ef651b5463c6d692d065a8ce6f859/src/pyodide/internal/python.ts#L272-L281);
// - the memory limit: Pyodide's WebAssembly memory and the JavaScript heap
//   past Cloudflare's 128 MB per isolate
//   (https://developers.cloudflare.com/workers/platform/limits/#memory);
// - a hang: an event that can never end because nothing that could end it is
//   under way, answered with workerd's own message
//   (https://github.com/cloudflare/workerd/blob/6552d999c79ef651b5463c6d692d065a8ce6f859/src/workerd/io/io-context.c%2B%2B#L1583-L1594).

import { createHook } from "node:async_hooks";
import v8 from "node:v8";
import vm from "node:vm";

/** workerd's error for a request that can never be answered. */
export const HUNG =
  "Error: The Workers runtime canceled this request because it detected that your Worker's " +
  "code had hung and would never generate a response. Refer to: " +
  "https://developers.cloudflare.com/workers/observability/errors/";

/**
 * How often an isolate with events in flight is looked at: its memory, and
 * whether it is idle. Each look costs ~1 µs.
 */
const TICK_MS = 20;
/** Ticks in a row (200 ms) the isolate must be idle before its events are hung. */
const IDLE_TICKS = 10;
/**
 * What Node lists as active while the isolate waits on nothing: the pipes
 * are pyflare's connection and the host's stdout and stderr.
 */
const QUIET = new Set(["PipeWrap", "TTYWrap"]);

/**
 * Calls `onFatal(message)` when Pyodide suffers a fatal error; Pyodide can
 * not run Python after one (every later call fails with "Cannot enter a
 * promising task from inside another running promising task").
 */
export function watchFatal(py, onFatal) {
  const api = py._api;
  if (!api) return;
  let reported = false;
  api.on_fatal = (error) => {
    if (reported) return;
    reported = true;
    let text;
    try {
      text = String(error);
    } catch {
      text = "unknown error";
    }
    // workerd's words when it aborts the isolate.
    onFatal(`Python worker fatal error: ${text}`);
  };
}

/**
 * A full, synchronous garbage collection, or null where Node offers none:
 * garbage is not counted against the limit.
 */
function collector() {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    return () => gc({ type: "major", execution: "sync" });
  } catch {
    return null;
  }
}

/** What Node itself holds before it loads anything of the worker. */
export function nodeBaseline() {
  return { heap: v8.getHeapStatistics().used_heap_size };
}

/**
 * The isolate's memory as workerd counts it, as closely as Node shows it:
 * Pyodide's WebAssembly memory (where every Python object lives) and the
 * JavaScript heap in use. The heap Node holds before loading anything
 * (`nodeBaseline()`, ~6 MB) is not counted: workerd has no Node. A loaded
 * hello-world worker counts ~46 MB: 30 MB of Pyodide memory and ~16 MB of
 * heap.
 *
 * Pyodide grows its memory through `memory.grow()`; past the limit that
 * call fails (so the allocation raises `MemoryError` in Python instead of
 * growing the process without bound) and `onExceeded` is called. The
 * JavaScript heap and buffers are looked at by `check()`, which the host
 * calls as the last event in flight ends and every 20 ms while events run
 * (~1 µs each time). Past the limit, garbage is collected first (10-50
 * ms), so that only what the worker still holds counts.
 *
 * Not emulated: ArrayBuffers (bodies in flight, typed arrays) are not
 * counted: the host copies a body more often than workerd does (frames,
 * chunks), and counting those copies stopped a 25 MiB KV put that
 * Cloudflare accepts. JavaScript memory allocated in a loop that never
 * yields is not counted until it does (the CPU limit stops such a loop);
 * memory the worker allocates at import time is not limited.
 */
export class MemoryLimit {
  #limit;
  #memory;
  #baseline;
  #onExceeded;
  #exceeded = false;
  #collect = null;

  constructor(py, limitBytes, baseline, onExceeded) {
    this.#limit = limitBytes;
    this.#baseline = baseline ?? { heap: 0 };
    this.#onExceeded = onExceeded;
    this.#memory = py._module?.memory ?? null;
    if (!limitBytes || !(this.#memory instanceof WebAssembly.Memory)) return;
    this.#collect = collector();
    const memory = this.#memory;
    const grow = memory.grow.bind(memory);
    // Emscripten's heap resize calls this; a throw makes it fail cleanly.
    memory.grow = (pages) => {
      const extra = pages * 65536;
      if (this.#exceeded || this.#over(extra)) {
        this.#exceed(extra);
        throw new RangeError("WebAssembly.Memory.grow(): Maximum memory size exceeded");
      }
      return grow(pages);
    };
  }

  /** Whether `extra` more bytes pass the limit, once garbage is collected. */
  #over(extra) {
    if (this.used() + extra <= this.#limit) return false;
    if (!this.#collect) return true;
    this.#collect();
    return this.used() + extra > this.#limit;
  }

  /** Bytes counted against the limit now. */
  used() {
    const { wasm, heap } = this.parts();
    return wasm + heap;
  }

  /** What is counted: Pyodide's memory, and the heap past Node's own. */
  parts() {
    return {
      wasm: this.#memory?.buffer.byteLength ?? 0,
      heap: Math.max(0, v8.getHeapStatistics().used_heap_size - this.#baseline.heap),
    };
  }

  /** Looks at the JavaScript heap; true when the limit is exceeded. */
  check() {
    if (!this.#limit || this.#exceeded) return this.#exceeded;
    if (this.#over(0)) this.#exceed(0);
    return this.#exceeded;
  }

  /** Past the limit, with `growing` more bytes of Pyodide's memory asked for. */
  #exceed(growing) {
    if (this.#exceeded) return;
    this.#exceeded = true;
    const parts = this.parts();
    parts.wasm += growing;
    this.#onExceeded(parts);
  }
}

/** Ids of thread-pool jobs under way, which Node's active resources leave out. */
const poolJobs = new Set();
let watchingPoolJobs = false;

/**
 * Starts counting the isolate's thread-pool jobs: WebCrypto's work
 * (`crypto.subtle`) and zlib's (compression streams, a compressed fetch
 * response, a WebSocket's deflate). Called the first time the worker
 * reaches an API that starts them (globals.mjs), not at start: the async
 * hook that counts them runs for every callback Node makes (each step of
 * a Python task among them): 2-6 % of the host's CPU per KV request.
 */
export function watchPoolJobs() {
  if (watchingPoolJobs) return;
  watchingPoolJobs = true;
  const zlib = new Set();
  createHook({
    init(id, type) {
      if (type === "ZLIB") zlib.add(id);
      if (type === "ZLIB" || type.endsWith("JOB") || type.endsWith("REQUEST")) poolJobs.add(id);
    },
    // A crypto job's callback runs once, when its work is done; a zlib
    // stream's runs for every chunk, so it counts until it is destroyed.
    before(id) {
      if (!zlib.has(id)) poolJobs.delete(id);
    },
    destroy(id) {
      poolJobs.delete(id);
      zlib.delete(id);
    },
    // Promises are not work under way, and tracking them costs every await.
    trackPromises: false,
  }).enable();
}

/** Whether `watchPoolJobs` has run. */
export function poolJobsWatched() {
  return watchingPoolJobs;
}

/** How many thread-pool jobs are under way (counted once watched). */
export function poolJobsUnderWay() {
  return poolJobs.size;
}

/**
 * Finds events that can never end. workerd cancels a request once nothing
 * it waits on is under way; here the whole isolate must be idle, for
 * IDLE_TICKS looks in a row: no timer, socket, DNS lookup or thread-pool
 * job (crypto, compression) in Node, and nothing awaited from pyflare
 * (`waiting()`: a binding call, a request body being read, credit for a
 * response body). Then every event in flight has hung.
 *
 * Not emulated: workerd tracks what each request waits on; here a request
 * that has hung is only found once no other request is busy either, and
 * an event still waiting for another one to resolve its promise is not
 * cancelled.
 */
export class HangWatch {
  /** key -> called with HUNG when the event has hung */
  #events = new Map();
  #waiting;
  #onTick;
  #timer = null;
  #idleTicks = 0;

  constructor(waiting, onTick) {
    this.#waiting = waiting;
    this.#onTick = onTick;
  }

  /** An event started; `onHung` ends it if it hangs. */
  begin(key, onHung) {
    this.#events.set(key, onHung);
    this.#idleTicks = 0;
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#tick(), TICK_MS);
      this.#timer.unref();
    }
  }

  /** The event ended (answered, failed or cancelled). */
  end(key) {
    this.#events.delete(key);
  }

  /** How many events are in flight. */
  get inFlight() {
    return this.#events.size;
  }

  #tick() {
    this.#onTick();
    if (this.#events.size === 0) {
      clearInterval(this.#timer);
      this.#timer = null;
      this.#idleTicks = 0;
      return;
    }
    if (!this.#idle()) {
      this.#idleTicks = 0;
      return;
    }
    this.#idleTicks += 1;
    if (this.#idleTicks < IDLE_TICKS) return;
    this.#idleTicks = 0;
    const hung = [...this.#events.values()];
    this.#events.clear();
    for (const onHung of hung) onHung(HUNG);
  }

  #idle() {
    if (poolJobsUnderWay() > 0 || this.#waiting()) return false;
    return process.getActiveResourcesInfo().every((type) => QUIET.has(type));
  }
}
