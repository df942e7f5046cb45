// A loaded worker: its Python handlers, called as workerd calls a module
// worker's default export, and the live instances of its other classes
// (actors.mjs).

import { Actors } from "./actors.mjs";

/** A loaded worker: dispatches events to its Python handlers. */
export class Worker {
  #invokers = new Map();

  constructor(py, entrypoints, info, env, background, origin) {
    this.origin = origin;
    this.py = py;
    this.entrypoints = entrypoints;
    this.info = info;
    this.env = env;
    this.background = background;
    this.actors = new Actors(this);
  }

  /** Calls `method` of the default export, as workerd calls a module worker. */
  async callDefault(method, args, ctx) {
    const { info } = this;
    let result;
    if (info.default_class) {
      if (!info.default_methods.includes(method)) {
        throw new Error(`Handler does not export a ${method}() function.`);
      }
      // Class instances get env and ctx from the constructor; the handler
      // still receives three arguments, the last two undefined. Separate
      // arguments, not an array: Pyodide converts each by itself, where an
      // array would be one more proxy to make and walk.
      result = await this.#invoker(method).callPromising(ctx, this.env, args[0], undefined, undefined);
    } else if (info.legacy.includes(`on_${method}`)) {
      result = await this.entrypoints.call_legacy.callPromising(`on_${method}`, [args[0], this.env, ctx]);
    } else {
      throw new Error(`Handler does not export a ${method}() function.`);
    }
    return result;
  }

  /** The Python function that handles `method` events of the default
   * export, made once per method (entrypoints.py, `invoker`). */
  #invoker(method) {
    let invoke = this.#invokers.get(method);
    if (!invoke) {
      const relaxed = method === "fetch" || method === "test";
      invoke = this.entrypoints.invoker(this.info.default_class, method, relaxed);
      this.#invokers.set(method, invoke);
    }
    return invoke;
  }

  isPyProxy(value) {
    return value instanceof this.py.ffi.PyProxy;
  }
}
