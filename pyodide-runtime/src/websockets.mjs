// workerd's server-side WebSockets: `WebSocketPair`, whose two ends pass
// messages to each other; a response with status 101 that carries one end
// (`new Response(null, {status: 101, webSocket: client})`), whose client
// pyflare's front connects (the `ws_*` messages, keyed by the fetch's id);
// and the Durable Object hibernation API's side of it (`acceptWebSocket`:
// messages and closes become calls of the object's `webSocketMessage` and
// `webSocketClose`; a connection that breaks off is a close with 1006, not
// wasClean).
// Not emulated: `webSocketError` is never called.
// https://developers.cloudflare.com/workers/runtime-apis/websockets/
// https://developers.cloudflare.com/durable-objects/best-practices/websockets/

import { Buffer } from "node:buffer";
import { describeError } from "./errors.mjs";

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// workerd's words (a JavaScript worker under Miniflare).
const NOT_ACCEPTED =
  "You must call one of accept() or state.acceptWebSocket() on this WebSocket before sending messages.";
const SEND_AFTER_CLOSE = "Can't call WebSocket send() after close().";
const ALREADY_HIBERNATED = "Can't accept() WebSocket after enabling hibernation.";
const ALREADY_ACCEPTED = "Cannot call `acceptWebSocket()` if the WebSocket was already accepted via `accept()`";

/** The channel to pyflare, set once the host connects. */
let channel = null;
/** stream id -> the client end pyflare's front connected. */
const wired = new Map();
/** 101 responses -> the client end they carry. */
const upgrades = new WeakMap();
/** Sockets a Durable Object accepted, by the object's key. */
const hibernating = new Map();
/** Durable Objects whose sockets had events since eviction last asked, by key. */
const active = new Set();
/** Each Durable Object's automatic response (`setWebSocketAutoResponse`), by key. */
const autoResponses = new Map();
/** Client ends kept while a Durable Object's 101 crosses pyflare, by handle. */
const crossing = new Map();
let nextHandle = 1;
/** The socket operations only this module uses (set by the class below). */
let internal = null;
/** What binary messages become for a listener: "blob" from 2026-03-17. */
let binaryTypeDefault = "arraybuffer";

/** The key a Durable Object's sockets are kept under. */
function objectKey(className, id) {
  return `${className}\0${id}`;
}

/** Sets the default `binaryType` (compatibility flag `websocket_standard_binary_type`). */
export function setBinaryTypeDefault(type) {
  binaryTypeDefault = type;
}

/** What a message's data becomes: a string, or an ArrayBuffer. */
function messageData(data) {
  if (typeof data?.toJs === "function") data = data.toJs(); // Python bytes
  if (data instanceof ArrayBuffer) return data.slice(0);
  if (ArrayBuffer.isView(data)) return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  // Anything else is sent as its string, as workerd sends it.
  return String(data);
}

class WebSocket extends EventTarget {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSING = CLOSING;
  static CLOSED = CLOSED;

  #peer = null;
  #state = OPEN;
  #accepted = false;
  /** With the hibernation API: `{ key, tags, dispatch(method, args) }`. */
  #hibernation = null;
  /** What arrived before the socket was accepted (or wired to pyflare). */
  #queue = [];
  /** The fetch id pyflare's front knows this client end by, once wired. */
  #stream = null;
  #closeSent = false;
  #attachment = undefined;
  #binaryType = binaryTypeDefault;
  /** When the object's automatic response last answered this socket. */
  #autoResponded = null;

  url = null;
  protocol = "";
  extensions = "";

  /** Listeners, each wrapped so that one that throws is logged, as workerd logs it. */
  #wrapped = new WeakMap();

  addEventListener(type, listener, options) {
    if (listener === null || listener === undefined) return;
    let wrapped = this.#wrapped.get(listener);
    if (!wrapped) {
      wrapped = (event) => {
        try {
          if (typeof listener === "function") listener.call(this, event);
          else listener.handleEvent(event);
        } catch (error) {
          reportUncaught(error);
        }
      };
      this.#wrapped.set(listener, wrapped);
    }
    super.addEventListener(type, wrapped, options);
  }

  removeEventListener(type, listener, options) {
    const wrapped = listener && this.#wrapped.get(listener);
    if (wrapped) super.removeEventListener(type, wrapped, options);
  }

  get readyState() {
    return this.#state;
  }

  get binaryType() {
    return this.#binaryType;
  }

  set binaryType(type) {
    if (type === "blob" || type === "arraybuffer") this.#binaryType = type;
  }

  accept() {
    if (this.#hibernation) throw new TypeError(ALREADY_HIBERNATED);
    if (this.#accepted) return;
    this.#accepted = true;
    this.#flush();
  }

  send(data) {
    if (!this.#accepted && !this.#hibernation) throw new TypeError(NOT_ACCEPTED);
    if (this.#closeSent || this.#state === CLOSED) throw new TypeError(SEND_AFTER_CLOSE);
    this.#peer?.#arrive({ data: messageData(data) });
  }

  close(code, reason) {
    if (this.#state === CLOSING && !this.#closeSent) {
      // Answering a close the client sent: pyflare's front has replied already.
      this.#closeSent = true;
      this.#state = CLOSED;
      return;
    }
    if (this.#closeSent || this.#state === CLOSED) return;
    this.#closeSent = true;
    if (this.#state === OPEN) this.#state = CLOSING;
    const close = { close: true, code: code ?? null, reason: reason === undefined ? "" : String(reason) };
    this.#peer?.#arrive(close);
  }

  serializeAttachment(value) {
    this.#attachment = value === undefined ? undefined : structuredClone(value);
  }

  deserializeAttachment() {
    return this.#attachment === undefined ? null : structuredClone(this.#attachment);
  }

  // The host's own operations, reachable from this module only (a worker
  // that reaches this class through a socket's `constructor` finds none).
  static {
    internal = {
      pair() {
        const client = new WebSocket();
        const server = new WebSocket();
        client.#peer = server;
        server.#peer = client;
        return [client, server];
      },

      /** Connects `client` to pyflare's front as `stream`. */
      wire(client, stream) {
        client.#stream = stream;
        client.#accepted = true;
        wired.set(stream, client);
        client.#flush();
      },

      /** A message or close from pyflare's client, for the peer of `stream`'s end. */
      fromClient(stream, item) {
        const client = wired.get(stream);
        if (!client) return;
        if (item.close) {
          wired.delete(stream);
          client.#state = CLOSED;
        }
        client.#peer?.#arrive(item);
      },

      hibernate(ws, key, tags, dispatch) {
        if (!(ws instanceof WebSocket)) {
          throw new TypeError(
            "Failed to execute 'acceptWebSocket' on 'DurableObjectState': parameter 1 is not of type 'WebSocket'.",
          );
        }
        if (ws.#accepted) throw new Error(ALREADY_ACCEPTED);
        if (ws.#hibernation) return;
        ws.#hibernation = { key, tags: [...(tags ?? [])].map(String), dispatch };
        let set = hibernating.get(key);
        if (!set) hibernating.set(key, (set = new Set()));
        set.add(ws);
        ws.#flush();
      },

      hibernating(key, tag) {
        const found = [];
        for (const ws of hibernating.get(key) ?? []) {
          if (tag === undefined || tag === null || ws.#hibernation.tags.includes(String(tag))) found.push(ws);
        }
        return found;
      },

      tags(ws) {
        return ws instanceof WebSocket && ws.#hibernation ? [...ws.#hibernation.tags] : [];
      },

      autoResponded(ws) {
        return ws instanceof WebSocket && ws.#autoResponded !== null ? new Date(ws.#autoResponded) : null;
      },
    };
  }

  /** A message (`{data}`) or close (`{close, code, reason, wasClean}`) for this end. */
  #arrive(item) {
    this.#queue.push(item);
    this.#flush();
  }

  #flush() {
    if (this.#stream !== null) {
      for (const item of this.#queue.splice(0)) this.#toClient(item);
      return;
    }
    if (!this.#accepted && !this.#hibernation) return;
    for (const item of this.#queue.splice(0)) this.#deliver(item);
  }

  /** What this client end was sent goes out to pyflare's client. */
  #toClient(item) {
    if (item.close) {
      channel?.send({ type: "ws_close", stream: this.#stream, code: item.code ?? undefined, reason: item.reason });
      return;
    }
    const message = { type: "ws_send", stream: this.#stream };
    if (typeof item.data === "string") message.text = item.data;
    else message.binary = Buffer.from(item.data).toString("base64");
    channel?.send(message);
  }

  #deliver(item) {
    if (item.close) {
      const code = item.code ?? 1005;
      const wasClean = item.wasClean ?? true;
      if (this.#hibernation) {
        active.add(this.#hibernation.key);
        // As workerd: the handler sees the socket CLOSING (CLOSED if the
        // object closed it first), still among getWebSockets().
        this.#state = this.#closeSent ? CLOSED : CLOSING;
        const forget = () => {
          hibernating.get(this.#hibernation.key)?.delete(this);
          this.#state = CLOSED;
          this.#closeSent = true;
        };
        Promise.resolve(this.#hibernation.dispatch("webSocketClose", [this, code, item.reason, wasClean])).finally(
          forget,
        );
      } else {
        this.#state = CLOSED;
        this.#closeSent = true;
        this.dispatchEvent(new CloseEvent("close", { code, reason: item.reason, wasClean }));
      }
      return;
    }
    if (this.#hibernation) {
      // The object's automatic response answers its request without
      // waking the object.
      const auto = autoResponses.get(this.#hibernation.key);
      if (auto && item.data === auto.request) {
        this.#autoResponded = Date.now();
        if (!this.#closeSent) this.#peer?.#arrive({ data: auto.response });
        return;
      }
      active.add(this.#hibernation.key);
      // The hibernation API gets binary messages as ArrayBuffers.
      this.#hibernation.dispatch("webSocketMessage", [this, item.data]);
      return;
    }
    const data = typeof item.data !== "string" && this.#binaryType === "blob" ? new Blob([item.data]) : item.data;
    this.dispatchEvent(new MessageEvent("message", { data }));
  }
}

/** A Durable Object's automatic response: `setWebSocketAutoResponse(pair)`. */
export class WebSocketRequestResponsePair {
  #request;
  #response;

  constructor(request, response) {
    for (const [n, value] of [[1, request], [2, response]]) {
      if (value === undefined) {
        throw new TypeError(
          `Failed to construct 'WebSocketRequestResponsePair': constructor parameter ${n} is not of type 'string'.`,
        );
      }
    }
    this.#request = String(request);
    this.#response = String(response);
  }

  get request() {
    return this.#request;
  }

  get response() {
    return this.#response;
  }
}

/** `new WebSocketPair()`: `{0: client, 1: server}`, as workerd's. */
export class WebSocketPair {
  constructor() {
    const [client, server] = internal.pair();
    this[0] = client;
    this[1] = server;
  }
}

/** An error thrown by a socket's listener: logged, as workerd logs it. */
function reportUncaught(error) {
  channel?.send({ type: "log", level: "error", message: `Uncaught ${describeError(error)}` });
}

/** Where pyflare's `ws_*` messages go out. */
export function attachChannel(hostChannel) {
  channel = hostChannel;
}

/** A `ws_message` or `ws_close` from pyflare. */
export function onSocketMessage(message) {
  if (message.type === "ws_message") {
    const data = message.text ?? new Uint8Array(Buffer.from(message.binary ?? "", "base64")).buffer;
    internal.fromClient(message.stream, { data });
  } else if (message.type === "ws_close") {
    internal.fromClient(message.stream, {
      close: true,
      code: message.code,
      reason: message.reason ?? "",
      wasClean: message.was_clean !== false,
    });
  }
}

/**
 * The worker's `new Response(body, init)` when `init.webSocket` is set: a
 * 101 response carrying the client end (Node's Response allows no 101).
 */
export function socketResponse(ResponseClass, body, init) {
  const client = init.webSocket;
  if (!(client instanceof WebSocket)) {
    throw new TypeError("Failed to construct 'Response': webSocket must be a WebSocket.");
  }
  if (init.status !== 101) {
    throw new RangeError("Responses with a WebSocket must have status code 101.");
  }
  const { status, webSocket, ...rest } = init;
  void status;
  void webSocket;
  const response = new ResponseClass(null, { ...rest, status: 200 });
  Object.defineProperties(response, {
    status: { value: 101 },
    statusText: { value: rest.statusText ?? "Switching Protocols" },
    ok: { value: false },
    webSocket: { value: client },
  });
  upgrades.set(response, client);
  void body;
  return response;
}

/** The client end a 101 response carries, or null. */
export function socketOf(response) {
  return upgrades.get(response) ?? null;
}

/** Sends `response`'s socket to pyflare's front as the answer to fetch `id`. */
export function wire(client, id) {
  internal.wire(client, id);
}

/**
 * What binding shims may use (their `create(name, call, options, host)`):
 * a Durable Object's 101 crossing pyflare, and the hibernation API.
 */
export const shimApi = Object.freeze({
  socketOf,
  objectKey,
  /** Whether the object's sockets had events since this was last asked. */
  activeSinceLastAsked(className, id) {
    return active.delete(objectKey(className, id));
  },
  /** Keeps a client end while its 101 crosses pyflare; the handle. */
  keep(client) {
    const handle = nextHandle++;
    crossing.set(handle, client);
    return handle;
  },
  /** The 101 response for a kept client end. */
  response(handle, init) {
    const client = crossing.get(handle);
    crossing.delete(handle);
    if (!client) throw new Error("the WebSocket of this response is gone");
    return socketResponse(Response, null, { ...init, status: 101, webSocket: client });
  },
  hibernate: (ws, key, tags, dispatch) => internal.hibernate(ws, key, tags, dispatch),
  hibernating: (key, tag) => internal.hibernating(key, tag),
  tags: (ws) => internal.tags(ws),
  setAutoResponse(key, pair) {
    if (pair === undefined || pair === null) autoResponses.delete(key);
    else if (!(pair instanceof WebSocketRequestResponsePair)) {
      throw new TypeError(
        "Failed to execute 'setWebSocketAutoResponse' on 'DurableObjectState': parameter 1 is not of type 'WebSocketRequestResponsePair'.",
      );
    } else autoResponses.set(key, pair);
  },
  autoResponse: (key) => autoResponses.get(key) ?? null,
  autoResponded: (ws) => internal.autoResponded(ws),
});
