// env.<NAME> for a Durable Object namespace: Cloudflare's
// DurableObjectNamespace, DurableObjectId and stub surface
// (https://developers.cloudflare.com/durable-objects/api/namespace/), and,
// inside an object, its DurableObjectState and DurableObjectStorage
// (https://developers.cloudflare.com/durable-objects/api/state/). Class
// names are workerd's, the ones Cloudflare's Python SDK looks for.
//
// Calls to an object (`stub.method(...)`, `stub.fetch(...)`) go to pyflare,
// which delivers them back to this host as events on the object's instance
// (see `event` below and pyodide-runtime/src/actors.mjs). Values cross as
// workerd stores and sends them: V8's structured-clone serialization.
// Storage validation and its messages live in Rust
// (bindings/src/durable_objects/error.rs).

import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import { deserialize, serialize } from "node:v8";

const ID_BYTES = 32;
const MAC_BYTES = 8;

const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const unb64 = (text) => Buffer.from(text, "base64");

/** The MAC that ends an id, so ids of other namespaces are refused. */
function mac(key, head) {
  return createHash("sha256").update(key).update("\0mac\0").update(head).digest().subarray(0, MAC_BYTES);
}

function makeId(key, head) {
  return Buffer.concat([head, mac(key, head)]).toString("hex");
}

class DurableObjectId {
  #hex;

  constructor(hex, name) {
    this.#hex = hex;
    // workerd leaves `name` undefined for ids not made from a name (present,
    // so Python reads None).
    this.name = name;
  }

  toString() {
    return this.#hex;
  }

  equals(other) {
    return other instanceof DurableObjectId && other.toString() === this.#hex;
  }
}

// The stub's class: workerd names it DurableObject.
class DurableObject {
  constructor(namespace, id, name) {
    this.id = id;
    // The stub's name: from getByName, or the name its id was made from.
    this.name = name;
    Object.defineProperty(this, "__ns", { value: namespace });
  }

  async fetch(input, init) {
    const request = new Request(input, init);
    const body = request.body === null ? null : b64(new Uint8Array(await request.arrayBuffer()));
    const { value } = await this.__ns.__call("fetch", {
      id: this.id.toString(),
      name: this.name,
      request: { method: request.method, url: request.url, headers: [...request.headers], body },
    });
    if (value.webSocket !== undefined) {
      // The object answered with a WebSocket: the same client end, in this isolate.
      return this.__ns.__host.websockets.response(value.webSocket, {
        statusText: value.statusText || undefined,
        headers: value.headers,
      });
    }
    const noBody = [101, 204, 205, 304].includes(value.status);
    return new Response(noBody || value.body === null ? null : unb64(value.body), {
      status: value.status,
      statusText: value.statusText,
      headers: value.headers,
    });
  }
}

/** Marks a Request or Response sent over RPC (V8's serializer takes neither). */
const RPC_MARK = "__pyflare_rpc__";

/**
 * A Request or Response among RPC arguments or as a result, as a plain
 * object V8 can serialize (its body read whole); other values as they are.
 */
async function encodeTop(value) {
  if (value instanceof Request || value instanceof Response) {
    const body = value.body === null ? null : new Uint8Array(await value.arrayBuffer());
    const head =
      value instanceof Request
        ? { kind: "Request", method: value.method, url: value.url }
        : { kind: "Response", status: value.status, statusText: value.statusText };
    return { [RPC_MARK]: head, headers: [...value.headers], body };
  }
  return value;
}

function decodeTop(value) {
  const head = value?.[RPC_MARK];
  if (!head) return value;
  if (head.kind === "Request") {
    return new Request(head.url, { method: head.method, headers: value.headers, body: value.body });
  }
  return new Response(value.body, { status: head.status, statusText: head.statusText, headers: value.headers });
}

/** Every other property of a stub is an RPC method of the object. */
const STUB_HANDLER = {
  get(target, prop, receiver) {
    if (typeof prop === "symbol" || prop in target || prop === "then" || prop === "toJSON") {
      return Reflect.get(target, prop, receiver);
    }
    return async (...args) => {
      const encoded = await Promise.all(args.map(encodeTop));
      const { value } = await target.__ns.__call("rpc", {
        id: target.id.toString(),
        name: target.name,
        call: prop,
        args: b64(serialize(encoded)),
      });
      return decodeTop(deserialize(unb64(value.value)));
    };
  },
};

class DurableObjectNamespace {
  #call;
  #options;
  #host;

  constructor(call, options, host) {
    this.#call = call;
    this.#options = options;
    this.#host = host;
  }

  /** For stubs and state objects only: what the host lends shims. */
  get __host() {
    return this.#host;
  }

  /**
   * For stubs and state objects only: a call into pyflare. A call to an
   * object comes back to this isolate as an event, and says so.
   */
  __call(method, args, body) {
    const loopsBack = method === "rpc" || method === "fetch";
    return this.#call(method, args, body, loopsBack ? { loopsBack } : undefined);
  }

  /** For state objects only: a storage call that blocks the isolate. */
  __callBlocking(method, args, body) {
    return this.#host.callBlocking(method, args, body);
  }

  get __options() {
    return this.#options;
  }

  idFromName(name) {
    const text = String(name);
    const head = createHash("sha256").update(this.#options.key).update("\0name\0").update(text).digest();
    return new DurableObjectId(makeId(this.#options.key, head.subarray(0, ID_BYTES - MAC_BYTES)), text);
  }

  newUniqueId(options) {
    // Not emulated: a jurisdiction only restricts where Cloudflare keeps the object.
    void options;
    return new DurableObjectId(makeId(this.#options.key, randomBytes(ID_BYTES - MAC_BYTES)));
  }

  idFromString(text) {
    const hex = String(text);
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      throw new TypeError("Invalid Durable Object ID: must be 64 hex digits");
    }
    const bytes = Buffer.from(hex, "hex");
    const head = bytes.subarray(0, ID_BYTES - MAC_BYTES);
    if (!mac(this.#options.key, head).equals(bytes.subarray(ID_BYTES - MAC_BYTES))) {
      throw new TypeError("Durable Object ID is not valid for this namespace.");
    }
    return new DurableObjectId(hex.toLowerCase());
  }

  get(id, options) {
    void options;
    if (!(id instanceof DurableObjectId)) {
      throw new TypeError(
        "Failed to execute 'get' on 'DurableObjectNamespace': parameter 1 is not of type 'DurableObjectId'.",
      );
    }
    return new Proxy(new DurableObject(this, id, id.name), STUB_HANDLER);
  }

  getByName(name, options) {
    return this.get(this.idFromName(name), options);
  }

  jurisdiction(jurisdiction) {
    // Not emulated: one namespace serves every jurisdiction locally.
    void jurisdiction;
    return this;
  }
}

/** Splits a reply body into the values `entries` ([key, length]) name. */
function values(entries, body) {
  const out = new Map();
  let at = 0;
  for (const [key, length] of entries) {
    out.set(key, deserialize(body.subarray(at, at + length)));
    at += length;
  }
  return out;
}

// workerd's words for the SQLite-only APIs on a key-value-backed class.
const NO_SQL =
  "SQL is not enabled for this Durable Object class. To enable it, change `new_classes` to `new_sqlite_classes` within the 'migrations' field in your wrangler.jsonc or wrangler.toml file. If using workerd directly,set `enableSql = true` in your workerd config for the class. Note that this change cannot be made after the class is already deployed to production.";
const NO_SYNC_KV =
  "The storage.kv (synchronous KV) API is only available for SQLite-backed Durable Objects, but this object's namespace is not declared to use SQLite. You can use the older, asyncronous interface via methods of `storage` itself (e.g. `storage.get()`). Alternatively, to enable SQLite, change `new_classes` to `new_sqlite_classes` within the 'migrations' field in your wrangler.jsonc or wrangler.toml file. If using workerd directly, set `enableSql = true` in your workerd config for the class. Note that this change cannot be made after the class is already deployed to production.";

/** V8's serialization, as workerd stores values; for pyflare's Python glue. */
const CODEC = Object.freeze({
  serialize: (value) => new Uint8Array(serialize(value)),
  deserialize: (bytes) => deserialize(Buffer.from(bytes)),
});

class DurableObjectStorage {
  #ns;
  #id;
  #gate;
  #tools;
  #sqlite;
  #python = null;

  constructor(ns, id, gate, tools) {
    this.#ns = ns;
    this.#id = id;
    this.#gate = gate;
    this.#tools = tools;
    this.#sqlite = ns.__options.sqlite === true;
  }

  /** One storage call; no other event reaches the object until it is answered. */
  #call(method, args, body) {
    return this.#gate.run(this.#ns.__call(method, { id: this.#id, ...args }, body));
  }

  /**
   * The synchronous APIs are Python objects (pyflare's `_pyflare.storage`),
   * so the worker's Python waits on them with JSPI, or, in code JavaScript
   * calls synchronously, blocks the isolate on them.
   */
  #sync() {
    if (this.#python === null) {
      const module = this.#tools.pyimport("_pyflare.storage");
      const call = (method, args, body) => this.#call(method, args, body);
      const blocking = (method, args, body) => this.#ns.__callBlocking(method, { id: this.#id, ...args }, body);
      this.#python = {
        sql: module.SqlStorage(call, blocking),
        kv: module.SyncKvStorage(call, CODEC, blocking),
        transactionSync: module.TransactionSync(call, blocking),
      };
    }
    return this.#python;
  }

  get sql() {
    if (!this.#sqlite) throw new Error(NO_SQL);
    return this.#sync().sql;
  }

  get kv() {
    if (!this.#sqlite) throw new Error(NO_SYNC_KV);
    return this.#sync().kv;
  }

  get transactionSync() {
    if (!this.#sqlite) throw new Error(NO_SQL);
    return this.#sync().transactionSync;
  }

  async get(keys, options) {
    void options;
    if (keys === undefined || keys === null) {
      throw new TypeError(
        "Failed to execute 'get' on 'DurableObjectStorage': parameter 1 is not of type 'string or Array'.",
      );
    }
    const many = Array.isArray(keys);
    const list = many ? keys.map(String) : [String(keys)];
    const { value, body } = await this.#call("get", { keys: list });
    const found = values(value.entries, body ?? new Uint8Array(0));
    return many ? found : found.get(list[0]);
  }

  async put(keyOrEntries, value, options) {
    let entries;
    if (keyOrEntries !== null && typeof keyOrEntries === "object") {
      entries = Object.entries(keyOrEntries);
      void value;
    } else {
      entries = [[String(keyOrEntries), value]];
      void options;
    }
    const parts = [];
    const lengths = [];
    for (const [, item] of entries) {
      if (item === undefined) {
        lengths.push(null);
        continue;
      }
      const bytes = serialize(item);
      parts.push(bytes);
      lengths.push(bytes.byteLength);
    }
    await this.#call("put", { keys: entries.map(([key]) => key), lengths }, parts.length ? Buffer.concat(parts) : null);
  }

  async delete(keys, options) {
    void options;
    const many = Array.isArray(keys);
    const { value } = await this.#call("delete", { keys: many ? keys.map(String) : [String(keys)] });
    return many ? value.deleted : value.deleted > 0;
  }

  async list(options) {
    const picked = {};
    for (const name of ["start", "startAfter", "end", "prefix"]) {
      if (options?.[name] !== undefined && options?.[name] !== null) picked[name] = String(options[name]);
    }
    if (options?.reverse !== undefined && options?.reverse !== null) picked.reverse = Boolean(options.reverse);
    if (options?.limit !== undefined && options?.limit !== null) picked.limit = Number(options.limit);
    const { value, body } = await this.#call("list", { options: picked });
    return values(value.entries, body ?? new Uint8Array(0));
  }

  async deleteAll(options) {
    void options;
    await this.#call("deleteAll", {});
  }

  async getAlarm(options) {
    void options;
    const { value } = await this.#call("getAlarm", {});
    return value.time;
  }

  async setAlarm(scheduledTime, options) {
    void options;
    // workerd's checks and words (a JavaScript Durable Object under Miniflare).
    if (!this.#tools.methods?.includes("alarm")) {
      throw new TypeError("Your Durable Object class must have an alarm() handler in order to call setAlarm()");
    }
    if (!(scheduledTime instanceof Date) && typeof scheduledTime !== "number") {
      throw new TypeError("Failed to execute 'setAlarm' on 'DurableObjectStorage': parameter 1 is not of type 'date'.");
    }
    const time = scheduledTime instanceof Date ? scheduledTime.getTime() : scheduledTime;
    await this.#call("setAlarm", { time: Number.isFinite(time) ? time : null });
  }

  async deleteAlarm(options) {
    void options;
    await this.#call("deleteAlarm", {});
  }

  /**
   * Runs `closure(txn)` with the object's storage in one SQLite
   * transaction: all of its writes, or none if it throws or calls
   * `txn.rollback()`. No other event reaches the object meanwhile.
   */
  async transaction(closure) {
    return this.#gate.run(async () => {
      const call = (method, args, body) => this.#ns.__call(method, { id: this.#id, ...args }, body);
      await call("transaction", { op: "begin" });
      let rolledBack = false;
      const txn = {
        get: (...args) => this.get(...args),
        put: (...args) => this.put(...args),
        delete: (...args) => this.delete(...args),
        list: (...args) => this.list(...args),
        rollback: () => {
          rolledBack = true;
        },
      };
      try {
        const result = await closure(txn);
        await call("transaction", { op: rolledBack ? "rollback" : "commit" });
        return result;
      } catch (error) {
        await call("transaction", { op: "rollback" });
        throw error;
      }
    });
  }

  async sync() {
    // Every write is durable once its call is answered.
  }
}

class DurableObjectState {
  #gate;
  #tools;
  #background = [];
  #sockets;
  #key;

  constructor(ns, id, gate, tools) {
    this.#gate = gate;
    this.#tools = tools;
    this.#sockets = ns.__host.websockets;
    this.#key = ns.__host.websockets.objectKey(ns.__options.className, id.toString());
    this.id = id;
    this.storage = new DurableObjectStorage(ns, id.toString(), gate, tools);
  }

  waitUntil(promise) {
    // Not emulated: an object is never evicted while pyflare runs, so there is nothing to extend.
    this.#background.push(Promise.resolve(promise).catch(() => {}));
  }

  async blockConcurrencyWhile(callback) {
    return this.#gate.run(async () => await callback());
  }

  /**
   * The hibernation API: the object's `webSocketMessage` and
   * `webSocketClose` get the socket's events, each as an event of its own,
   * through the input gate. The sockets outlive an evicted instance; the
   * next event builds it again.
   * Not emulated: `webSocketError` (a broken connection is a close with
   * 1006) and hibernation's own eviction (a quiet object idles out as any
   * other, its sockets kept).
   */
  acceptWebSocket(ws, tags) {
    const methods = this.#tools.methods ?? [];
    const run = this.#tools.run;
    // A handler that raises is logged as an uncaught error, its traceback
    // with it; the promise says when the handler is done.
    const dispatch = (method, args) => (methods.includes(method) ? run(method, args) : undefined);
    this.#sockets.hibernate(ws, this.#key, tags, dispatch);
  }

  getWebSockets(tag) {
    return this.#sockets.hibernating(this.#key, tag);
  }

  getTags(ws) {
    return this.#sockets.tags(ws);
  }

  /** Answers `pair.request` with `pair.response` on this object's sockets, without waking it. */
  setWebSocketAutoResponse(pair) {
    this.#sockets.setAutoResponse(this.#key, pair);
  }

  getWebSocketAutoResponse() {
    return this.#sockets.autoResponse(this.#key);
  }

  getWebSocketAutoResponseTimestamp(ws) {
    return this.#sockets.autoResponded(ws);
  }

  /**
   * Resets the object: the next event gets a new instance, which finds its
   * state in storage. Cloudflare's SDK calls this from a microtask and
   * raises DurableObjectAbort in the running method itself.
   */
  abort(reason) {
    void reason;
    this.#tools.reset();
  }
}

/**
 * Builds `env[name]`; `options` is `{className, key}`: the class and the
 * namespace's secret that ids are derived from.
 */
export function create(name, call, options, host) {
  return new DurableObjectNamespace(call, options, host);
}

/**
 * A call to an object, delivered back by pyflare: run `method` on the
 * instance for the id (pyodide-runtime/src/actors.mjs).
 */
export function event(handler, payload, namespace) {
  const { className } = namespace.__options;
  // Cloudflare passes `ctx.id.name` only for names up to 1,024 bytes
  // (https://developers.cloudflare.com/durable-objects/api/id/).
  const name = payload.name ?? undefined;
  const kept = name !== undefined && Buffer.byteLength(name) <= 1024 ? name : undefined;
  const id = new DurableObjectId(payload.id, kept);
  const instance = {
    className,
    key: payload.id,
    state: (gate, tools) => new DurableObjectState(namespace, id, gate, tools),
  };
  // `error` is `{name, message}` (the host's describeForCaller).
  const finish = (value, error) => {
    if (error !== undefined) {
      return { error };
    }
    return handler === "fetch" ? value : { value: b64(serialize(value)) };
  };
  if (handler === "evict") {
    // Messages on its WebSockets since the last try keep an object alive,
    // as events do; pyflare tries again after another idle spell.
    const keep = () => namespace.__host.websockets.activeSinceLastAsked(instance.className, payload.id);
    return { instance, drop: true, keep, finish: (evicted) => ({ evicted: evicted === true }) };
  }
  if (handler === "alarm") {
    const info = { retryCount: payload.retryCount, isRetry: payload.isRetry, scheduledTime: payload.scheduledTime };
    return { instance, method: "alarm", mode: "raw", args: [info], finish: () => null };
  }
  if (handler === "fetch") {
    const r = payload.request;
    const request = new Request(r.url, {
      method: r.method,
      headers: r.headers,
      body: r.body === null ? null : unb64(r.body),
    });
    const settle = async (response) => {
      if (!(response instanceof Response)) {
        throw new TypeError("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
      }
      const websockets = namespace.__host.websockets;
      const socket = websockets.socketOf(response);
      if (socket) {
        const webSocket = websockets.keep(socket);
        return { status: 101, statusText: response.statusText, headers: [...response.headers], body: null, webSocket };
      }
      const body = response.body === null ? null : b64(new Uint8Array(await response.arrayBuffer()));
      return { status: response.status, statusText: response.statusText, headers: [...response.headers], body };
    };
    return { instance, method: "fetch", mode: "relaxed", args: [request], settle, finish };
  }
  const args = deserialize(unb64(payload.args)).map(decodeTop);
  return { instance, method: payload.call, mode: "rpc", args, settle: encodeTop, finish };
}
