// Framing between pyflare (Rust) and this host, mirror of
// emulator/src/host/transport.rs. Nothing else knows the byte layout.
//
// A frame is a 4-byte big-endian length of what follows, then one kind byte:
//   kind 0 (JSON):  UTF-8 JSON text of one protocol message
//   kind 1 (CHUNK): 4-byte big-endian stream id, then raw body bytes
//   kind 2 (LAST_CHUNK): as CHUNK, and the stream ends with it (no body_end
//                    follows); a small body travels as one frame
// Bodies therefore never travel as JSON or base64.

export const KIND_JSON = 0;
export const KIND_CHUNK = 1;
export const KIND_LAST_CHUNK = 2;
/** Largest frame either side accepts (length field value). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Body chunks are cut to at most this many bytes. */
export const CHUNK_BYTES = 64 * 1024;

/** Encodes one JSON message as a single frame. */
export function encodeJson(message) {
  const text = Buffer.from(JSON.stringify(message), "utf8");
  const frame = Buffer.allocUnsafe(5 + text.length);
  frame.writeUInt32BE(1 + text.length, 0);
  frame.writeUInt8(KIND_JSON, 4);
  text.copy(frame, 5);
  return frame;
}

/**
 * Encodes the header of a chunk frame; the body bytes follow it on the wire.
 * With `last`, the chunk also ends its stream.
 */
export function encodeChunkHeader(stream, byteLength, last = false) {
  const header = Buffer.allocUnsafe(9);
  header.writeUInt32BE(5 + byteLength, 0);
  header.writeUInt8(last ? KIND_LAST_CHUNK : KIND_CHUNK, 4);
  header.writeUInt32BE(stream >>> 0, 5);
  return header;
}

/**
 * Frames gathered into one buffer, to leave in one write: a JSON message
 * or a chunk header costs a few copied bytes here rather than a buffer and
 * a socket write of its own (7 of each per KV put+get request before).
 */
export class FrameWriter {
  #buffer = Buffer.allocUnsafeSlow(INITIAL_WRITER_BYTES);
  #length = 0;

  /** Bytes gathered and not taken yet. */
  get length() {
    return this.#length;
  }

  json(message) {
    const text = JSON.stringify(message);
    // A UTF-16 unit is at most 3 bytes of UTF-8; a long text (a large log
    // line) is measured rather than given three times its room.
    this.#reserve(5 + (text.length <= EXACT_LENGTH_ABOVE ? 3 * text.length : Buffer.byteLength(text, "utf8")));
    const start = this.#length;
    const written = this.#buffer.write(text, start + 5, "utf8");
    this.#buffer.writeUInt32BE(1 + written, start);
    this.#buffer[start + 4] = KIND_JSON;
    this.#length = start + 5 + written;
  }

  /** The header of a chunk of `byteLength` bytes; the bytes follow with `bytes`, or on the wire. */
  chunkHeader(stream, byteLength, last = false) {
    this.#reserve(9);
    const start = this.#length;
    this.#buffer.writeUInt32BE(5 + byteLength, start);
    this.#buffer[start + 4] = last ? KIND_LAST_CHUNK : KIND_CHUNK;
    this.#buffer.writeUInt32BE(stream >>> 0, start + 5);
    this.#length = start + 9;
  }

  /** A whole chunk frame: its header and `data` (a Uint8Array). */
  chunk(stream, data, last = false) {
    this.chunkHeader(stream, data.byteLength, last);
    this.bytes(data);
  }

  /** Raw body bytes (a Uint8Array). */
  bytes(data) {
    this.#reserve(data.byteLength);
    this.#buffer.set(data, this.#length);
    this.#length += data.byteLength;
  }

  /** What was gathered, in a buffer of its own; the writer starts empty again. */
  take() {
    const out = Buffer.allocUnsafe(this.#length);
    this.#buffer.copy(out, 0, 0, this.#length);
    this.#length = 0;
    if (this.#buffer.length > MAX_KEPT_WRITER_BYTES) this.#buffer = Buffer.allocUnsafeSlow(INITIAL_WRITER_BYTES);
    return out;
  }

  #reserve(n) {
    if (this.#length + n <= this.#buffer.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(2 * this.#buffer.length, this.#length + n));
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}

const INITIAL_WRITER_BYTES = 16 * 1024;
const EXACT_LENGTH_ABOVE = 64 * 1024;
/** A writer that grew past this (a burst of large frames) shrinks back when emptied. */
const MAX_KEPT_WRITER_BYTES = 1024 * 1024;

/**
 * Incremental decoder: feed it socket data, get whole frames back as
 * `{ kind: "json", message }` or `{ kind: "chunk", stream, data, last }`.
 */
export class FrameDecoder {
  #buffers = [];
  #buffered = 0;

  push(data) {
    this.#buffers.push(data);
    this.#buffered += data.length;
    const frames = [];
    for (;;) {
      if (this.#buffered < 4) break;
      const head = this.#peek(4);
      const length = head.readUInt32BE(0);
      if (length < 1 || length > MAX_FRAME_BYTES) {
        throw new Error(`invalid frame length ${length}`);
      }
      if (this.#buffered < 4 + length) break;
      const frame = this.#take(4 + length).subarray(4);
      const kind = frame[0];
      if (kind === KIND_JSON) {
        frames.push({
          kind: "json",
          message: JSON.parse(frame.toString("utf8", 1)),
        });
      } else if (kind === KIND_CHUNK || kind === KIND_LAST_CHUNK) {
        if (frame.length < 5) throw new Error("chunk frame without stream id");
        frames.push({
          kind: "chunk",
          stream: frame.readUInt32BE(1),
          data: frame.subarray(5),
          last: kind === KIND_LAST_CHUNK,
        });
      } else {
        throw new Error(`unknown frame kind ${kind}`);
      }
    }
    return frames;
  }

  #peek(n) {
    if (this.#buffers[0].length >= n) return this.#buffers[0];
    const joined = Buffer.concat(this.#buffers);
    this.#buffers = [joined];
    return joined;
  }

  #take(n) {
    const all = this.#buffers.length === 1 ? this.#buffers[0] : Buffer.concat(this.#buffers);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#buffers = rest.length ? [rest] : [];
    this.#buffered -= n;
    return out;
  }
}
