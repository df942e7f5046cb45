// Sending side of the connection to pyflare, with per-stream credit for
// body chunks so a large response body is held in memory at most one window
// at a time.

import { encodeJson, encodeChunkHeader, CHUNK_BYTES } from "./transport.mjs";
import { BODY_WINDOW_BYTES } from "./protocol.mjs";

/** Ids of calls from this host start here, apart from pyflare's fetch ids. */
const FIRST_CALL_ID = 0x80000000;

export class Channel {
  #socket;
  #nextCallId = FIRST_CALL_ID;
  /** call id -> { resolve, reject, reply, parts } */
  #calls = new Map();
  /** stream id -> { inFlight, waiters[] } for bodies this host sends */
  #outgoing = new Map();

  constructor(socket) {
    this.#socket = socket;
  }

  send(message) {
    this.#write(encodeJson(message));
  }

  // Writes issued in one turn of the event loop leave in one syscall.
  #corked = false;
  #write(buffer) {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(buffer);
  }

  /**
   * Starts an outgoing body before its response head is sent, so a cancel
   * that arrives before the first chunk is not lost. Returns a promise that
   * resolves when pyflare cancels the stream.
   */
  openStream(stream) {
    let cancel;
    const cancelled = new Promise((resolve) => {
      cancel = resolve;
    });
    this.#outgoing.set(stream, { inFlight: 0, waiters: [], cancelled: false, cancel, whenCancelled: cancelled });
    return cancelled;
  }

  /**
   * Sends `bytes` as chunks of `stream`, waiting for credit when the window
   * is full. With `last`, the final chunk also ends the stream (no
   * `endStream` follows).
   */
  async sendChunk(stream, bytes, last = false) {
    const state = this.#outgoing.get(stream);
    if (!state) return false;
    if (bytes.byteLength === 0 && !last) return !state.cancelled;
    for (const [piece, isLastPiece] of pieces(bytes)) {
      while (state.inFlight >= BODY_WINDOW_BYTES && !state.cancelled) {
        await new Promise((resolve) => state.waiters.push(resolve));
      }
      if (state.cancelled) return false;
      state.inFlight += piece.byteLength;
      const final = last && isLastPiece;
      if (final) this.#outgoing.delete(stream);
      this.#write(encodeChunkHeader(stream, piece.byteLength, final));
      this.#write(piece);
    }
    return !state.cancelled;
  }

  /**
   * Calls method `method` of binding `binding` in pyflare. Resolves to
   * `{ value, body }` (body: Uint8Array or null); rejects with the error
   * class and message Cloudflare uses.
   */
  call(binding, method, args, body) {
    const id = this.#nextCallId;
    this.#nextCallId = this.#nextCallId >= 0xfffffff0 ? FIRST_CALL_ID : this.#nextCallId + 1;
    const hasBody = body !== null && body !== undefined;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject, reply: null, parts: [] });
      this.send({ type: "call", id, binding, method, args: args ?? {}, has_body: hasBody });
      if (hasBody) {
        // Whole at hand: the last chunk ends the stream.
        const bytes = body instanceof Uint8Array ? body : new Uint8Array(body);
        for (const [piece, isLastPiece] of pieces(bytes)) {
          this.#write(encodeChunkHeader(id, piece.byteLength, isLastPiece));
          this.#write(piece);
        }
      }
    });
  }

  /**
   * Whether this host waits on pyflare: a binding call not answered yet, or
   * a response body waiting for credit.
   */
  waiting() {
    if (this.#calls.size > 0) return true;
    for (const state of this.#outgoing.values()) {
      if (state.waiters.length > 0) return true;
    }
    return false;
  }

  /**
   * Sends `message` at once, with what this turn has written so far, even
   * from code that will not yield (a worker's allocation loop).
   */
  sendNow(message) {
    if (this.#corked) {
      this.#corked = false;
      this.#socket.uncork();
    }
    this.#socket.write(encodeJson(message));
  }

  /** Whether `stream` belongs to a call made by this host. */
  ownsCall(stream) {
    return this.#calls.has(stream);
  }

  onCallChunk(stream, data) {
    this.#calls.get(stream)?.parts.push(new Uint8Array(data));
  }

  onCallReply(message) {
    const call = this.#calls.get(message.id);
    if (!call) return;
    call.reply = message;
    if (!message.has_body) this.#settle(message.id, null);
  }

  onCallBodyEnd(stream) {
    const call = this.#calls.get(stream);
    if (!call || !call.reply) return;
    const length = call.parts.reduce((n, part) => n + part.byteLength, 0);
    const body = new Uint8Array(length);
    let offset = 0;
    for (const part of call.parts) {
      body.set(part, offset);
      offset += part.byteLength;
    }
    this.#settle(stream, body);
  }

  #settle(id, body) {
    const call = this.#calls.get(id);
    this.#calls.delete(id);
    const { reply } = call;
    if (reply.error) {
      const ErrorClass = globalThis[reply.error.class] ?? Error;
      call.reject(new ErrorClass(reply.error.message));
    } else {
      call.resolve({ value: reply.ok ?? null, body });
    }
  }

  /** pyflare's consumer took `bytes` of `stream`. */
  credit(stream, bytes) {
    const state = this.#outgoing.get(stream);
    if (!state) return;
    state.inFlight -= bytes;
    const waiters = state.waiters.splice(0);
    for (const wake of waiters) wake();
  }

  /** The receiver went away: wake the sender so it stops. */
  cancel(stream) {
    const state = this.#outgoing.get(stream);
    if (!state) return;
    state.cancelled = true;
    state.cancel();
    for (const wake of state.waiters.splice(0)) wake();
  }

  isCancelled(stream) {
    return this.#outgoing.get(stream)?.cancelled ?? false;
  }

  endStream(stream, error) {
    this.#outgoing.delete(stream);
    this.send(error ? { type: "body_end", stream, error } : { type: "body_end", stream });
  }
}

/**
 * `bytes` cut into pieces of at most CHUNK_BYTES, each with whether it is
 * the last; no bytes give one empty piece, so a stream can still end.
 */
function* pieces(bytes) {
  let offset = 0;
  do {
    const end = Math.min(offset + CHUNK_BYTES, bytes.byteLength);
    yield [bytes.subarray(offset, end), end === bytes.byteLength];
    offset = end;
  } while (offset < bytes.byteLength);
}
