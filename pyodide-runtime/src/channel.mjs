// Sending side of the connection to pyflare, with per-stream credit for
// body chunks so a large response body is held in memory at most one window
// at a time, and binding calls into pyflare, whose bodies stream both ways
// under the same credit window.

// Node's own, not the global one actors.mjs counts as Python's steps.
import { setImmediate } from "node:timers";
import { readSync, writeSync } from "node:fs";
import { encodeJson, CHUNK_BYTES, FrameDecoder, FrameWriter } from "./transport.mjs";
import { BODY_WINDOW_BYTES } from "./protocol.mjs";
import { IncomingBody, toBytes } from "./bodies.mjs";

/** Ids of calls from this host start here, apart from pyflare's fetch ids. */
const FIRST_CALL_ID = 0x80000000;

export class Channel {
  #socket;
  #nextCallId = FIRST_CALL_ID;
  /** call id -> { resolve, reject, reply, parts, body } (body: a streamed reply) */
  #calls = new Map();
  /** ids of calls whose body this host is still sending */
  #callBodies = new Set();
  /** stream id -> { inFlight, waiters[] } for bodies this host sends */
  #outgoing = new Map();

  /** Whether the worker has loaded and serves events. */
  #serving = false;

  /**
   * What pyflare's Python glue reaches, as the `_pyflare_host` module
   * (`_pyflare/sync.py`): binding calls by name, and whether the worker
   * serves yet. Nothing else of the channel is exposed to Python.
   */
  pythonApi = Object.freeze({
    call: (binding, method, args, body) => this.call(String(binding), String(method), args, body),
    callBlocking: (binding, method, args, body) => this.callBlocking(String(binding), String(method), args, body),
    serving: () => this.#serving,
  });

  constructor(socket) {
    this.#socket = socket;
  }

  /** The worker has loaded: synchronous calls from Python are allowed. */
  startServing() {
    this.#serving = true;
  }

  send(message) {
    this.#gather().json(message);
  }

  // Frames issued in one turn of the event loop leave in one syscall: the
  // frames of every request that ran in the turn (each step of a Python
  // task is a callback of its own), not one write per callback. Under load
  // that is fewer writes here and fewer reads and wake-ups in pyflare:
  // ~10% less CPU per KV put+get request for the two processes (~3-6% of
  // the host's, ~20% of pyflare's), measured with both loaded at once.
  // Messages, chunk headers and small bodies are copied into one buffer
  // (#frames), not written as a buffer each; a large piece of a body is
  // written as it is, after what was gathered before it. For the 7 frames
  // of a KV put+get request that took the send side from 4.5 to 3.1 us of
  // CPU, measured apart from the rest of the host.
  #corked = false;
  #frames = new FrameWriter();

  /** The writer of this turn's frames, which leave when the turn ends. */
  #gather() {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      // Unless `sendNow` or a blocking call has sent them already.
      setImmediate(() => this.#uncork());
    }
    return this.#frames;
  }

  /** A chunk of `stream`: copied when small, else written as it is. */
  #chunk(stream, bytes, last) {
    const frames = this.#gather();
    if (bytes.byteLength <= COPIED_BYTES) {
      frames.chunk(stream, bytes, last);
      return;
    }
    frames.chunkHeader(stream, bytes.byteLength, last);
    this.#socket.write(frames.take());
    this.#socket.write(bytes);
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
      this.#chunk(stream, piece, final);
    }
    return !state.cancelled;
  }

  /**
   * Calls method `method` of binding `binding` in pyflare. `body` is bytes
   * (a Uint8Array, ArrayBuffer or view), a string, or a ReadableStream,
   * which is sent as it is read, under the credit window. Resolves to
   * `{ value, body }`: body is null, a Uint8Array, or with
   * `options.stream` a ReadableStream that pyflare fills as it is read.
   * `options.loopsBack` marks a call pyflare answers by running an event
   * in this isolate, so it does not keep the isolate from counting as hung.
   * Rejects with the error class and message Cloudflare uses, or with the
   * error of a body stream that failed.
   */
  call(binding, method, args, body, options) {
    const id = this.#nextCallId;
    this.#nextCallId = this.#nextCallId >= 0xfffffff0 ? FIRST_CALL_ID : this.#nextCallId + 1;
    const hasBody = body !== null && body !== undefined;
    return new Promise((resolve, reject) => {
      this.#calls.set(id, {
        resolve,
        reject,
        reply: null,
        parts: [],
        stream: options?.stream === true,
        loopsBack: options?.loopsBack === true,
        body: null,
      });
      if (!hasBody) {
        this.send({ type: "call", id, binding, method, args: args ?? {}, has_body: false });
        return;
      }
      const bytes = body instanceof ReadableStream ? null : toBytes(body);
      if (bytes && bytes.byteLength <= BODY_WINDOW_BYTES) {
        this.send({ type: "call", id, binding, method, args: args ?? {}, has_body: true });
        this.#writeWhole(id, bytes);
        return;
      }
      // Opened before the call leaves, so pyflare's cancel is never missed.
      this.openStream(id);
      this.#callBodies.add(id);
      this.send({ type: "call", id, binding, method, args: args ?? {}, has_body: true });
      this.#sendCallBody(id, bytes ?? body);
    });
  }

  /**
   * Calls `method` of binding `binding` in pyflare and blocks the isolate
   * until it answers, over the host's second connection (its standard
   * input; see emulator/src/host/blocking.rs): for synchronous storage calls
   * from code JSPI cannot suspend. `body` is bytes or a string. Returns
   * `{ value, body }` (body: a Uint8Array or null) or throws the error
   * class and message Cloudflare uses.
   *
   * Not emulated: this call may overtake the asynchronous calls this host
   * has sent and pyflare has not finished (on workerd, storage calls of one
   * object run in order).
   */
  callBlocking(binding, method, args, body) {
    const bytes = body === null || body === undefined ? null : toBytes(body);
    // What this turn wrote so far leaves first.
    this.#uncork();
    // The call and its body (stream 0) leave in one write.
    const frames = new FrameWriter();
    frames.json({ binding, method, args: args ?? {}, has_body: bytes !== null });
    if (bytes) {
      for (const [piece, isLastPiece] of pieces(bytes)) frames.chunk(0, piece, isLastPiece);
    }
    writeAll(frames.take());
    const decoder = new FrameDecoder();
    const scratch = Buffer.allocUnsafe(64 * 1024);
    let reply = null;
    for (;;) {
      const n = readSync(BLOCKING_FD, scratch, 0, scratch.length, null);
      if (n === 0) throw new Error("pyflare closed the connection for synchronous calls");
      for (const frame of decoder.push(Buffer.from(scratch.subarray(0, n)))) {
        if (frame.kind === "json") {
          reply = frame.message;
          if (!reply.has_body) return settled(reply, null);
        } else if (reply && frame.last) {
          return settled(reply, new Uint8Array(frame.data));
        }
      }
    }
  }

  async #sendCallBody(id, body) {
    try {
      if (!(body instanceof ReadableStream)) {
        await this.sendChunk(id, body, true);
        return;
      }
      const reader = body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            await this.sendChunk(id, new Uint8Array(0), true);
            return;
          }
          if (!(await this.sendChunk(id, toBytes(value)))) {
            // pyflare has what it needs (or gave up): stop reading.
            reader.cancel().catch(() => {});
            return;
          }
        }
      } finally {
        reader.releaseLock();
      }
    } catch (error) {
      // The worker's stream failed: the binding sees the body break off,
      // and a call not answered yet fails with the stream's own error (a
      // streamed reply already under way breaks off in turn).
      if (!this.isCancelled(id)) this.endStream(id, String(error?.message ?? error));
      const call = this.#calls.get(id);
      if (call && !call.body) {
        this.#calls.delete(id);
        call.reject(error);
      }
    } finally {
      this.#callBodies.delete(id);
      // A body pyflare cancelled leaves no state behind.
      if (this.isCancelled(id)) this.#outgoing.delete(id);
    }
  }

  /**
   * Sends `bytes`, the whole body of `stream`: at once when it fits the
   * credit window, else under credit. Resolves false if pyflare cancelled
   * it.
   */
  async sendWhole(stream, bytes) {
    if (bytes.byteLength > BODY_WINDOW_BYTES) {
      this.openStream(stream);
      return this.sendChunk(stream, bytes, true);
    }
    this.#writeWhole(stream, bytes);
    return true;
  }

  /** Small and whole at hand: at once, the last chunk ends the stream. */
  #writeWhole(stream, bytes) {
    for (const [piece, isLastPiece] of pieces(bytes)) this.#chunk(stream, piece, isLastPiece);
  }

  /** Whether `stream` is the body of a call this host is still sending. */
  sendsCallBody(stream) {
    return this.#callBodies.has(stream);
  }

  /**
   * Whether this host waits on pyflare: a binding call not answered yet, a
   * streamed reply body being read, or a body waiting for credit.
   */
  waiting() {
    for (const call of this.#calls.values()) {
      // A call pyflare answers with an event in this same isolate (a
      // Durable Object's method) waits on this isolate, not on pyflare.
      if (call.loopsBack && !call.body) continue;
      if (!call.body || call.body.awaited) return true;
    }
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
    this.#uncork();
    this.#socket.write(encodeJson(message));
  }

  /** Sends what this turn has written so far, now. */
  #uncork() {
    if (this.#corked) {
      this.#corked = false;
      if (this.#frames.length > 0) this.#socket.write(this.#frames.take());
      this.#socket.uncork();
    }
  }

  /** Whether `stream` belongs to a call made by this host. */
  ownsCall(stream) {
    return this.#calls.has(stream);
  }

  onCallChunk(stream, data, last = false) {
    const call = this.#calls.get(stream);
    if (!call) return;
    // Copy: the frame buffer is reused by the decoder's concatenation.
    const bytes = new Uint8Array(data);
    if (call.body) {
      call.body.push(bytes);
      return;
    }
    call.parts.push(bytes);
    // Read whole: take it all; the last chunk needs no credit.
    if (!last) this.send({ type: "credit", stream, bytes: bytes.byteLength });
  }

  onCallReply(message) {
    const call = this.#calls.get(message.id);
    if (!call) {
      // The call already failed here (its body stream raised): stop a body.
      if (message.has_body) this.send({ type: "cancel", stream: message.id });
      return;
    }
    call.reply = message;
    if (!message.has_body) this.#settle(message.id, null);
    else if (call.stream && !message.error) {
      call.body = new IncomingBody(message.id, this, () => this.#calls.delete(message.id), {
        byteStream: true,
        cancelSends: true,
      });
      call.resolve({ value: message.ok ?? null, body: call.body.stream });
    }
  }

  onCallBodyEnd(stream, error) {
    const call = this.#calls.get(stream);
    if (!call || !call.reply) return;
    if (call.body) {
      call.body.end(error);
      return;
    }
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
      call.reject(replyError(reply));
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
    this.#callBodies.delete(stream);
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

/** Body pieces up to this size are copied into the turn's frames; larger ones are written as they are. */
const COPIED_BYTES = 16 * 1024;

/** The host's standard input: pyflare's connection for blocking calls. */
const BLOCKING_FD = 0;

function writeAll(buffer) {
  let offset = 0;
  while (offset < buffer.byteLength) {
    offset += writeSync(BLOCKING_FD, buffer, offset, buffer.byteLength - offset);
  }
}

/** The error a failed call's reply names, of the class Cloudflare uses. */
function replyError(reply) {
  const ErrorClass = globalThis[reply.error.class] ?? Error;
  return new ErrorClass(reply.error.message);
}

/** A blocking call's reply as `Channel.call` resolves it, or its error thrown. */
function settled(reply, body) {
  if (reply.error) throw replyError(reply);
  return { value: reply.ok ?? null, body };
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
