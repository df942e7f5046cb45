// Instances of the worker's classes that outlive one event (a Durable
// Object: one instance per id), and the input gate that orders the events
// delivered to each, as workerd's actors do
// (https://blog.cloudflare.com/durable-objects-easy-fast-correct-choose-three/).
//
// A binding's shim asks for an instance in the answer of its `event()`
// (or, with `drop: true`, that the instance be forgotten):
// `{instance: {className, key, state(gate, tools)}, method, mode, args,
// finish}`. The first event for a (class, key) builds the instance with
// `Class(state, env)`, where `state` is what the shim's `state(gate, tools)`
// returns (a DurableObjectState); every later event for it reuses it. Events
// interleave at awaits, except while the instance's gate is closed: a
// storage call the shim runs through `gate.run(...)` and
// `blockConcurrencyWhile` close it, and an event closes it while its
// synchronous start runs, so no other event starts in between.

/**
 * Immediates queued and not yet run, counted so a gate can tell whether
 * Python has steps ready to run: Pyodide's WebLoop queues every step of a
 * Python task with the global `setImmediate` in Node. The gates' own
 * turns use the uncounted original.
 */
const pending = new Set();
const nativeSetImmediate = globalThis.setImmediate;
const nativeClearImmediate = globalThis.clearImmediate;
let counting = false;

/**
 * Starts counting immediates, when the first gate is made: a worker
 * without Durable Objects never pays for it (a closure and a set entry per
 * Python step). Those queued before run within the gate's first turn,
 * which it always waits for (MIN_TURNS).
 */
function countImmediates() {
  if (counting) return;
  counting = true;
  globalThis.setImmediate = function setImmediate(callback, ...args) {
    const immediate = nativeSetImmediate((...values) => {
      pending.delete(immediate);
      callback(...values);
    }, ...args);
    pending.add(immediate);
    return immediate;
  };
  globalThis.clearImmediate = function clearImmediate(immediate) {
    pending.delete(immediate);
    nativeClearImmediate(immediate);
  };
}

/**
 * A released gate stays closed at least this many turns of the event loop,
 * and then until no Python step is ready to run (nothing else queued with
 * `setImmediate`), so the code that awaited has run to its next await; at
 * most MAX_TURNS turns, so a busy isolate cannot hold a gate shut.
 */
const MIN_TURNS = 1;
const MAX_TURNS = 64;

export class Gate {
  #locks = 0;
  #waiters = [];

  constructor() {
    countImmediates();
  }

  /** Whether no event may start now. */
  get closed() {
    return this.#locks > 0;
  }

  /**
   * Waits until the gate is open, then closes it (in the same turn, so no
   * other event slips in between) until the matching `release()`.
   */
  async enter() {
    while (this.#locks > 0) {
      await new Promise((resolve) => this.#waiters.push(resolve));
    }
    this.#locks += 1;
  }

  /** Closes the gate until the matching `release()`. */
  lock() {
    this.#locks += 1;
  }

  /** Opens what `lock()` closed, once the code that waited has resumed. */
  release() {
    let turns = 0;
    const later = () => {
      turns += 1;
      if (turns < MAX_TURNS && (turns < MIN_TURNS || pending.size > 0)) {
        nativeSetImmediate(later);
        return;
      }
      this.#locks -= 1;
      if (this.#locks === 0) {
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const wake of waiters) wake();
      }
    };
    nativeSetImmediate(later);
  }

  /** Runs `work` (a promise or a function returning one) with the gate closed. */
  async run(work) {
    this.lock();
    try {
      return await (typeof work === "function" ? work() : work);
    } finally {
      this.release();
    }
  }
}

/** The live instances of one worker's classes, by class and key. */
export class Actors {
  #worker;
  /** `${className}\0${key}` -> { gate, ready } */
  #live = new Map();

  constructor(worker) {
    this.#worker = worker;
  }

  /**
   * What a shim's `state(gate, tools)` may use besides the gate: pyflare's
   * own Python glue (`_pyflare.*` modules, e.g. `_pyflare.storage` for
   * synchronous storage APIs), nothing else of the interpreter; and, per
   * instance, `tools.methods` (the public methods of its class) and
   * `tools.reset()` (forget it at once, as `ctx.abort()` does).
   */
  #tools = Object.freeze({
    pyimport: (name) => {
      if (!String(name).startsWith("_pyflare.")) throw new Error(`not pyflare's module: ${name}`);
      return this.#worker.py.pyimport(String(name));
    },
  });

  /** How many instances are live. */
  get size() {
    return this.#live.size;
  }

  /**
   * Calls `method` on the instance `target` names, building it first if
   * this is its first event. `mode` is how arguments pass: "rpc" (converted
   * with the SDK's python_from_rpc, strict), "relaxed" (converted, extra
   * arguments dropped: fetch) or "raw" (JS values as they are: alarm).
   */
  async call(target, method, mode, args) {
    const { className, key } = target;
    const classes = this.#worker.info.classes ?? [];
    const described = classes.find((c) => c.name === className);
    if (!described) {
      throw new Error(`the worker exports no class ${className}`);
    }
    const id = `${className}\0${key}`;
    let actor = this.#live.get(id);
    if (!actor) {
      const gate = new Gate();
      actor = { gate, ready: null, busy: 0 };
      this.#live.set(id, actor);
      const reset = () => {
        if (this.#live.get(id) === actor) this.#live.delete(id);
        this.#worker.entrypoints.drop_instance(className, key);
      };
      // `run`: an event the host itself delivers to this object (a message
      // on a WebSocket it accepted), building the instance again if it was
      // evicted meanwhile.
      const run = (method, args) => this.call(target, method, "raw", args);
      const state = target.state(gate, { ...this.#tools, methods: described.methods, reset, run });
      actor.ready = gate.run(() =>
        this.#worker.entrypoints.construct.callPromising(className, key, state, this.#worker.env),
      );
      actor.ready.catch(() => {
        // A constructor that raised leaves no instance: the next event tries again.
        if (this.#live.get(id) === actor) this.#live.delete(id);
      });
    }
    actor.busy += 1;
    try {
      return await this.#run(actor, className, key, described, method, mode, args);
    } finally {
      actor.busy -= 1;
    }
  }

  async #run(actor, className, key, described, method, mode, args) {
    await actor.ready;
    if (!described.methods.includes(method)) {
      // workerd's words (a JS Durable Object under Miniflare).
      throw new TypeError(`The RPC receiver does not implement the method "${method}".`);
    }
    await actor.gate.enter();
    let running;
    try {
      running = this.#worker.entrypoints.call_instance.callPromising(className, key, method, mode, args);
    } finally {
      actor.gate.release();
    }
    return running;
  }

  /**
   * Forgets the instance of `className` with `key` (evicted after
   * idleness), unless an event is running on it; whether it did. The next
   * event builds a new instance, which finds its state in storage.
   */
  drop(className, key) {
    const id = `${className}\0${key}`;
    const actor = this.#live.get(id);
    if (!actor) return true;
    if (actor.busy > 0 || actor.gate.closed) return false;
    this.#live.delete(id);
    this.#worker.entrypoints.drop_instance(className, key);
    return true;
  }
}
