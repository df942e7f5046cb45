// The global scope a worker sees through `import js`: workerd's, not
// Node's. Only the names a Worker has are visible (the JavaScript language's
// own globals and the web platform APIs workerd provides); everything else
// on Node's global object (process, Buffer, require, the node:* modules,
// localStorage, ...) does not exist for the worker, whatever path it takes:
// `js.process`, `js.globalThis.process`, `js.self.process`. Code generation
// from strings is off for the whole isolate (`--disallow-code-generation-from-strings`,
// see emulator/src/host/sandbox.rs), so `eval`, `Function` and
// `constructor.constructor` throw workerd's EvalError instead of reaching
// Node through a new function.

import vm from "node:vm";
import { watchPoolJobs } from "./faults.mjs";
import { WebSocketPair, WebSocketRequestResponsePair, socketResponse } from "./websockets.mjs";

/**
 * The web platform globals of workerd that Node also implements with the
 * same standard. Node-only extras (BroadcastChannel, Storage,
 * PerformanceObserver, setImmediate, ...) are left out.
 */
const WEB_GLOBALS = [
  "AbortController",
  "AbortSignal",
  "Blob",
  "ByteLengthQueuingStrategy",
  "CloseEvent",
  "CompressionStream",
  "CountQueuingStrategy",
  "Crypto",
  "CryptoKey",
  "CustomEvent",
  "DOMException",
  "DecompressionStream",
  "ErrorEvent",
  "Event",
  "EventTarget",
  "File",
  "FormData",
  "Headers",
  "MessageChannel",
  "MessageEvent",
  "MessagePort",
  "Navigator",
  "Performance",
  "PerformanceEntry",
  "PerformanceMark",
  "PerformanceMeasure",
  "ReadableByteStreamController",
  "ReadableStream",
  "ReadableStreamBYOBReader",
  "ReadableStreamBYOBRequest",
  "ReadableStreamDefaultController",
  "ReadableStreamDefaultReader",
  "Request",
  "Response",
  "SubtleCrypto",
  "TextDecoder",
  "TextDecoderStream",
  "TextEncoder",
  "TextEncoderStream",
  "TransformStream",
  "TransformStreamDefaultController",
  "URL",
  "URLPattern",
  "URLSearchParams",
  "WebSocket",
  "WritableStream",
  "WritableStreamDefaultController",
  "WritableStreamDefaultWriter",
  "atob",
  "btoa",
  "crypto",
  "fetch",
  "performance",
  "queueMicrotask",
  "structuredClone",
];

/**
 * The language's own globals (Object, Array, Promise, WebAssembly, eval,
 * ...), read from a fresh V8 context so they follow the V8 in use.
 */
const LANGUAGE_GLOBALS = Object.getOwnPropertyNames(vm.runInNewContext("globalThis"));

const VISIBLE = new Set([...LANGUAGE_GLOBALS, ...WEB_GLOBALS]);

/**
 * Globals through which a worker can start thread-pool work: `crypto`
 * (its `subtle`) and the compression streams. The first look-up of one
 * starts counting such jobs for the hang watch (`watchPoolJobs`), as do
 * the worker's first `fetch` and `WebSocket` (zlib decompresses their
 * data); Pyodide's own imports look `fetch` up, so that one counts only
 * when called.
 */
const POOL_GLOBALS = new Set(["crypto", "CompressionStream", "DecompressionStream"]);

/** `navigator.userAgent` in workerd. */
const USER_AGENT = "Cloudflare-Workers";
const workerNavigator = Object.freeze({
  userAgent: USER_AGENT,
  language: "en",
  hardwareConcurrency: 1,
});

/** workerd's timers take a function and return a number. */
function checkedTimer(name, start) {
  return function timer(callback, delay, ...args) {
    if (typeof callback !== "function") {
      throw new TypeError(`Failed to execute '${name}' on 'ServiceWorkerGlobalScope': parameter 1 is not of type 'Function'.`);
    }
    // The number, not Node's Timeout object (whose fields lead into
    // Node's timer lists); clearTimeout and clearInterval accept it.
    return +start(callback, delay, ...args);
  };
}

// Captured before any worker code runs (the worker can replace the shared
// prototypes' methods): host code calls these, never methods looked up at
// call time, where it holds something the worker must not get.
const apply = Reflect.apply;
const setHeader = Headers.prototype.set;

/** A console that writes where Node's does, without Node's stream fields. */
function workerConsole() {
  const methods = [
    "assert", "clear", "count", "countReset", "debug", "dir", "dirxml", "error", "group",
    "groupCollapsed", "groupEnd", "info", "log", "table", "time", "timeEnd", "timeLog", "trace", "warn",
  ];
  const view = {};
  for (const method of methods) {
    const real = console[method];
    if (typeof real === "function") view[method] = (...args) => apply(real, console, args);
  }
  return Object.freeze(view);
}

/** The header pyflare's server knows a worker's subrequests by. */
const SUBREQUEST_HEADER = "cf-worker";

/**
 * `fetch` and `WebSocket` that mark every request the worker makes with
 * `CF-Worker: <worker name>`, as Cloudflare marks a worker's subrequests.
 * pyflare's loopback-only routes refuse requests carrying it, so a worker
 * cannot move the emulator's clock or trigger its handlers through them.
 */
function markedSubrequests(workerName) {
  const realFetch = globalThis.fetch;
  const RealWebSocket = globalThis.WebSocket;
  function fetch(input, init) {
    watchPoolJobs();
    const request = new Request(input, init);
    apply(setHeader, request.headers, [SUBREQUEST_HEADER, workerName]);
    return realFetch(request);
  }
  // A Node without a global WebSocket (before 22) runs only the node tests.
  const WebSocket =
    RealWebSocket &&
    class WebSocket extends RealWebSocket {
      constructor(url, protocols) {
        watchPoolJobs();
        const headers = { [SUBREQUEST_HEADER]: workerName };
        super(url, protocols === undefined ? { headers } : { protocols, headers });
      }
    };
  return { fetch, WebSocket };
}

/** Bodies the worker gave `new Response(...)` as a string, by response. */
const textBodies = new WeakMap();

/**
 * The worker's `Response`: the same class, whose construction also notes a
 * string body, so that the host can send a response built from a string
 * without reading it back through its stream (`wholeTextBody`).
 */
const WorkerResponse = new Proxy(Response, {
  construct(target, args, newTarget) {
    // A 101 carrying a WebSocket, which Node's Response cannot be.
    const init = args[1];
    if (init !== null && typeof init === "object" && init.webSocket !== undefined && init.webSocket !== null) {
      return socketResponse(target, args[0], init);
    }
    const status = init?.status;
    if (typeof status === "number" && (status < 200 || status > 599)) {
      // workerd's words, not Node's.
      throw new RangeError("Responses may only be constructed with status codes in the range 200 to 599, inclusive.");
    }
    const response = Reflect.construct(target, args, newTarget);
    if (typeof args[0] === "string") textBodies.set(response, args[0]);
    return response;
  },
});

/**
 * The string the worker built `response` from, when nothing has read its
 * body since, else null (read it from its stream).
 */
export function wholeTextBody(response) {
  const text = textBodies.get(response);
  if (text === undefined || response.bodyUsed || response.body.locked) return null;
  return text;
}

/**
 * Closes the paths into Node that exist on every V8 object rather than on
 * the global scope. Called once, before any worker code runs.
 */
export function hardenIsolate() {
  // `Error.prepareStackTrace` hands a hook the call sites of an error,
  // whose `getThis()` and `getFunction()` reach objects of the frames that
  // threw (host code among them). workerd's workers never need it; pyflare's
  // own code does not use it.
  Object.defineProperty(Error, "prepareStackTrace", {
    value: undefined,
    writable: false,
    configurable: false,
  });
}

/**
 * A view of the global scope for Pyodide's `jsglobals`. Names the worker
 * sets on it stay on it. Extra names (the WebSocketPair class, for example,
 * when it exists) can be added with `define`.
 */
export function makeWorkerGlobals(workerName) {
  const subrequests = markedSubrequests(workerName);
  const own = new Map([
    ["fetch", subrequests.fetch],
    ["WebSocket", subrequests.WebSocket],
    ["navigator", workerNavigator],
    ["WebSocketPair", WebSocketPair],
    ["WebSocketRequestResponsePair", WebSocketRequestResponsePair],
    ["Response", WorkerResponse],
    ["console", workerConsole()],
    ["setTimeout", checkedTimer("setTimeout", setTimeout)],
    ["setInterval", checkedTimer("setInterval", setInterval)],
    ["clearTimeout", (id) => clearTimeout(id)],
    ["clearInterval", (id) => clearInterval(id)],
  ]);
  const visible = (key) => own.has(key) || VISIBLE.has(key);
  const lookup = (key) => {
    if (POOL_GLOBALS.has(key)) watchPoolJobs();
    if (own.has(key)) return own.get(key);
    if (VISIBLE.has(key)) return globalThis[key];
    return undefined;
  };
  // The target is a plain object, not Node's global object: every read
  // goes through `lookup`, and nothing the worker does reaches the real one.
  const view = new Proxy(
    {},
    {
      has: (_target, key) => visible(key),
      get: (_target, key) => lookup(key),
      set(_target, key, value) {
        own.set(key, value);
        return true;
      },
      defineProperty(_target, key, descriptor) {
        own.set(key, descriptor.get ? descriptor.get() : descriptor.value);
        return true;
      },
      deleteProperty(_target, key) {
        own.delete(key);
        return true;
      },
      ownKeys: () => [...new Set([...VISIBLE, ...own.keys()])].filter((key) => visible(key)),
      getOwnPropertyDescriptor(_target, key) {
        if (!visible(key)) return undefined;
        return { value: lookup(key), writable: true, enumerable: false, configurable: true };
      },
    },
  );
  own.set("globalThis", view);
  own.set("self", view);
  return {
    view,
    define(name, value) {
      own.set(name, value);
    },
  };
}
