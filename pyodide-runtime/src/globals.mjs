// The global scope a worker sees through `import js`: workerd-like, not
// Node's. Node-only names are hidden; everything a Worker has (fetch,
// Request, Response, Headers, URL, streams, crypto, timers, console, ...) is
// Node's own implementation of the same web standard.

const HIDDEN = new Set([
  "process",
  "Buffer",
  "require",
  "module",
  "exports",
  "global",
  "__filename",
  "__dirname",
  "setImmediate",
  "clearImmediate",
]);

/** `navigator.userAgent` in workerd. */
const USER_AGENT = "Cloudflare-Workers";
const workerNavigator = Object.freeze({
  userAgent: USER_AGENT,
  language: "en",
  hardwareConcurrency: 1,
});

/**
 * A view of globalThis for Pyodide's `jsglobals`. Extra names (the
 * WebSocketPair class, for example, when it exists) can be added with `define`.
 */
export function makeWorkerGlobals() {
  const extra = new Map([["navigator", workerNavigator]]);
  const view = new Proxy(globalThis, {
    has(target, key) {
      if (HIDDEN.has(key)) return false;
      return extra.has(key) || Reflect.has(target, key);
    },
    get(target, key) {
      if (HIDDEN.has(key)) return undefined;
      if (extra.has(key)) return extra.get(key);
      return Reflect.get(target, key);
    },
    ownKeys(target) {
      const keys = Reflect.ownKeys(target).filter((key) => !HIDDEN.has(key));
      for (const key of extra.keys()) if (!keys.includes(key)) keys.push(key);
      return keys;
    },
    getOwnPropertyDescriptor(target, key) {
      if (HIDDEN.has(key)) return undefined;
      if (extra.has(key)) {
        return { value: extra.get(key), writable: true, enumerable: false, configurable: true };
      }
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
  });
  return {
    view,
    define(name, value) {
      extra.set(name, value);
    },
  };
}
