// env.<NAME> for a queue producer: Cloudflare's WorkerQueue surface
// (https://developers.cloudflare.com/queues/configuration/javascript-apis/),
// and the batches a consumer's `queue` handler receives (workerd's
// QueueController and QueueMessage, src/workerd/api/queue.c++). Bodies are
// serialized here as workerd serializes them (text, JSON, bytes, or V8's
// structured clone through Node's own serializer, which runs in the host,
// never in the worker's reach); every check and error message lives in
// Rust (bindings/src/queues/error.rs).

import { deserialize, serialize } from "node:v8";

/** The hidden binding of the worker's consumers (bindings/src/queues/mod.rs). */
const CONSUMERS = "(queue consumers)";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A message as Rust checks it (its JavaScript type, its content type as
 * given, its size) and its serialized bytes.
 */
function encode(body, contentType, delaySeconds) {
  const meta = { type: typeof body, view: ArrayBuffer.isView(body) };
  if (contentType !== undefined && contentType !== null) meta.contentType = String(contentType);
  const delay = seconds(delaySeconds);
  if (delay !== undefined) meta.delaySeconds = delay;
  let bytes = new Uint8Array(0);
  if (body !== undefined) {
    switch ((meta.contentType ?? "json").toLowerCase()) {
      case "text":
        if (typeof body === "string") bytes = encoder.encode(body);
        break;
      case "bytes":
        if (meta.view) bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength).slice();
        break;
      case "json":
        bytes = encoder.encode(JSON.stringify(body) ?? "null");
        break;
      case "v8":
        bytes = new Uint8Array(serialize(body));
        break;
    }
  }
  meta.size = bytes.byteLength;
  return { meta, bytes };
}

/** `delaySeconds` as workerd's int conversion takes it. */
function seconds(value) {
  if (value === undefined || value === null) return undefined;
  const n = Math.trunc(Number(value));
  return Number.isNaN(n) ? 0 : n;
}

function joined(parts) {
  const total = parts.reduce((sum, part) => sum + part.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** `{metadata: {metrics}}`, with the oldest message's time as a Date. */
function sendResponse(value) {
  const metrics = value?.metadata?.metrics ?? {};
  if (typeof metrics.oldestMessageTimestamp === "number") {
    metrics.oldestMessageTimestamp = new Date(metrics.oldestMessageTimestamp);
  }
  return { metadata: { metrics } };
}

class WorkerQueue {
  #call;

  constructor(call) {
    this.#call = call;
  }

  async send(body, options) {
    const { meta, bytes } = encode(body, options?.contentType, options?.delaySeconds);
    const { value } = await this.#call("send", { message: meta }, bytes);
    return sendResponse(value);
  }

  async sendBatch(messages, options) {
    const args = {};
    const delay = seconds(options?.delaySeconds);
    if (delay !== undefined) args.delaySeconds = delay;
    let parts = [];
    if (messages === null || messages === undefined || typeof messages[Symbol.iterator] !== "function") {
      args.messages = null;
    } else {
      args.messages = [];
      for (const message of messages) {
        // Older documentation nests the options under `options`.
        const contentType = message?.contentType ?? message?.options?.contentType;
        const delaySeconds = message?.delaySeconds ?? message?.options?.delaySeconds;
        const { meta, bytes } = encode(message?.body, contentType, delaySeconds);
        args.messages.push(meta);
        parts.push(bytes);
      }
    }
    const { value } = await this.#call("sendBatch", args, joined(parts));
    return sendResponse(value);
  }
}

/** A body as the consumer's payload carries it (see consumer.rs). */
function decode(message) {
  switch (message.contentType) {
    case "text":
      return message.body;
    case "json":
      return JSON.parse(message.body);
    case "bytes": {
      const bytes = Uint8Array.fromBase64(message.body);
      return bytes.buffer;
    }
    default:
      return deserialize(Uint8Array.fromBase64(message.body));
  }
}

/**
 * What the handler did with a batch, kept as workerd's QueueEventResult:
 * the first call on a message wins, and `ackAll`/`retryAll` exclude each
 * other.
 */
class Result {
  acks = new Set();
  retries = new Map();
  ackAll = false;
  retryAll = false;
  retryAllDelay = undefined;
  /** Calls that had no effect: [call, message id or null, the earlier call]. */
  ignored = [];

  report() {
    return {
      acks: [...this.acks],
      retries: [...this.retries].map(([id, delay]) => [id, delay ?? null]),
      ackAll: this.ackAll,
      retryAll: this.retryAll,
      retryAllDelay: this.retryAllDelay ?? null,
      ignored: this.ignored,
    };
  }
}

class QueueMessage {
  #id;
  #timestamp;
  #body;
  #attempts;
  #result;

  constructor(message, result) {
    this.#id = message.id;
    this.#timestamp = new Date(message.timestamp);
    this.#body = decode(message);
    this.#attempts = message.attempts;
    this.#result = result;
  }

  get id() {
    return this.#id;
  }

  get timestamp() {
    return this.#timestamp;
  }

  get body() {
    return this.#body;
  }

  get attempts() {
    return this.#attempts;
  }

  ack() {
    const result = this.#result;
    if (result.ackAll) return;
    const earlier = result.retryAll ? "retryAll" : result.retries.has(this.#id) ? "retry" : null;
    if (earlier) {
      result.ignored.push(["ack", this.#id, earlier]);
      return;
    }
    result.acks.add(this.#id);
  }

  retry(options) {
    const result = this.#result;
    const earlier = result.ackAll ? "ackAll" : result.acks.has(this.#id) ? "ack" : null;
    if (earlier) {
      result.ignored.push(["retry", this.#id, earlier]);
      return;
    }
    result.retries.set(this.#id, seconds(options?.delaySeconds));
  }
}

class QueueController {
  #queue;
  #messages;
  #result;

  constructor(queue, messages, result) {
    this.#queue = queue;
    this.#messages = messages;
    this.#result = result;
  }

  get queue() {
    return this.#queue;
  }

  get messages() {
    return this.#messages;
  }

  ackAll() {
    if (this.#result.retryAll) {
      this.#result.ignored.push(["ackAll", null, "retryAll"]);
      return;
    }
    this.#result.ackAll = true;
  }

  retryAll(options) {
    if (this.#result.ackAll) {
      this.#result.ignored.push(["retryAll", null, "ackAll"]);
      return;
    }
    this.#result.retryAll = true;
    const delay = seconds(options?.delaySeconds);
    if (delay !== undefined) this.#result.retryAllDelay = delay;
  }
}

/**
 * Builds `env[name]`; `call(method, args, body, options)` reaches the Rust
 * binding (see `Channel.call` in pyodide-runtime/src/channel.mjs). The
 * consumers' binding has no `env` entry.
 */
export function create(name, call) {
  if (name === CONSUMERS) return undefined;
  return new WorkerQueue(call);
}

/** A consumer's batch for the worker's `queue(batch, env, ctx)`. */
export function event(handler, payload) {
  if (handler !== "queue") throw new Error(`queues deliver no ${handler} events`);
  const result = new Result();
  const messages = payload.messages.map((message) => new QueueMessage(message, result));
  const batch = new QueueController(payload.queue, messages, result);
  return { args: [batch], finish: () => result.report() };
}
