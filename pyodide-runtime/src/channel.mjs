// Sending side of the connection to pyflare, with per-stream credit for
// body chunks so a large response body is held in memory at most one window
// at a time.

import { encodeJson, encodeChunkHeader, CHUNK_BYTES } from "./transport.mjs";
import { BODY_WINDOW_BYTES } from "./protocol.mjs";

export class Channel {
  #socket;
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

  /** Sends `bytes` as chunks of `stream`, waiting for credit when the window is full. */
  async sendChunk(stream, bytes) {
    let state = this.#outgoing.get(stream);
    if (!state) {
      state = { inFlight: 0, waiters: [], cancelled: false };
      this.#outgoing.set(stream, state);
    }
    for (let offset = 0; offset < bytes.byteLength; offset += CHUNK_BYTES) {
      const piece = bytes.subarray(offset, Math.min(offset + CHUNK_BYTES, bytes.byteLength));
      while (state.inFlight >= BODY_WINDOW_BYTES && !state.cancelled) {
        await new Promise((resolve) => state.waiters.push(resolve));
      }
      if (state.cancelled) return false;
      state.inFlight += piece.byteLength;
      this.#write(encodeChunkHeader(stream, piece.byteLength));
      this.#write(piece);
    }
    return !state.cancelled;
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
