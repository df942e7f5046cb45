// The worker's global scope leads nowhere near Node: a walk over every
// object reachable from it (own properties, symbols, getters, prototypes)
// never meets `process`, Node's global object or a node:* module.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { makeWorkerGlobals, wholeTextBody } from "../src/globals.mjs";

const require = createRequire(import.meta.url);
const FORBIDDEN = new Map([
  [process, "process"],
  [globalThis, "Node's globalThis"],
  [Buffer, "Buffer"],
  [require, "require"],
]);
for (const name of ["child_process", "fs", "net", "vm", "worker_threads", "module", "os", "http"]) {
  FORBIDDEN.set(require(`node:${name}`), `node:${name}`);
}

function* children(value) {
  const keys = [];
  try {
    keys.push(...Reflect.ownKeys(value));
  } catch {
    return;
  }
  for (const key of keys) {
    let child;
    try {
      child = value[key];
    } catch {
      continue;
    }
    // Getters on prototypes answer rejected promises for a wrong `this`.
    if (child instanceof Promise) child.catch(() => {});
    yield [String(key.description ?? key), child];
  }
  try {
    yield ["[[Prototype]]", Object.getPrototypeOf(value)];
  } catch {}
}

test("nothing reachable from the worker's globals is Node's", () => {
  const { view } = makeWorkerGlobals("probe");
  const seen = new Set();
  let frontier = [[view, "js"]];
  for (let depth = 0; depth < 5 && frontier.length > 0; depth++) {
    const next = [];
    for (const [value, path] of frontier) {
      for (const [key, child] of children(value)) {
        if ((typeof child !== "object" && typeof child !== "function") || child === null) continue;
        const where = `${path}.${key}`;
        assert.ok(!FORBIDDEN.has(child), `${where} is ${FORBIDDEN.get(child)}`);
        if (seen.has(child)) continue;
        seen.add(child);
        next.push([child, where]);
      }
    }
    frontier = next;
  }
  assert.ok(seen.size > 500, `walked only ${seen.size} objects`);
});

test("the worker's globals hide Node's names and keep the Worker's", () => {
  const { view } = makeWorkerGlobals("probe");
  for (const name of ["process", "Buffer", "require", "global", "setImmediate", "localStorage", "fs"]) {
    assert.equal(view[name], undefined, name);
    assert.equal(name in view, false, name);
  }
  for (const name of ["fetch", "Request", "Response", "URL", "crypto", "setTimeout", "console", "WebAssembly"]) {
    assert.ok(view[name] !== undefined, name);
  }
  assert.equal(view.globalThis, view);
  assert.equal(view.self, view);
  view.custom = 1;
  assert.equal(view.custom, 1);
  assert.equal(globalThis.custom, undefined);
});

test("timers take functions only and answer numbers", () => {
  const { view } = makeWorkerGlobals("probe");
  assert.throws(() => view.setTimeout("1 + 1", 0), {
    name: "TypeError",
    message: "Failed to execute 'setTimeout' on 'ServiceWorkerGlobalScope': parameter 1 is not of type 'Function'.",
  });
  const id = view.setTimeout(() => {}, 1000);
  assert.equal(typeof id, "number");
  view.clearTimeout(id);
});

test("a response the worker builds from a string is sent as that string, until it is read", async () => {
  const { view } = makeWorkerGlobals("probe");
  const WorkerResponse = view.Response;
  const built = new WorkerResponse("héllo", { status: 201 });
  assert.ok(built instanceof Response);
  assert.ok(built instanceof WorkerResponse);
  assert.equal(built.status, 201);
  assert.equal(wholeTextBody(built), "héllo");

  // Read by the worker, or its stream taken: the host reads it as a stream.
  const read = new WorkerResponse("gone");
  assert.equal(await read.text(), "gone");
  assert.equal(wholeTextBody(read), null);
  const locked = new WorkerResponse("held");
  locked.body.getReader();
  assert.equal(wholeTextBody(locked), null);

  // Bodies that are not strings, and responses made elsewhere, are streams.
  assert.equal(wholeTextBody(new WorkerResponse(new Uint8Array([1, 2]))), null);
  assert.equal(wholeTextBody(new Response("not the worker's")), null);
  assert.equal(wholeTextBody(WorkerResponse.json({ a: 1 })), null);
  class Sub extends WorkerResponse {}
  const sub = new Sub("subclass");
  assert.ok(sub instanceof Sub);
  assert.equal(wholeTextBody(sub), "subclass");
});
