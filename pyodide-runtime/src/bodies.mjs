// Bodies arriving from pyflare as chunks of one stream (a request body, a
// binding call's reply body): a ReadableStream whose reader grants pyflare
// credit for each chunk it takes, so at most one window of the body is in
// this host at a time.

/** Bytes from the types a stream or a shim may hand over. */
export function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError("This ReadableStream did not return bytes.");
}

export class IncomingBody {
  #queue = [];
  #ended = false;
  #error = null;
  #wake = null;
  #id;
  #channel;
  #done;
  #what;

  /**
   * `done` runs once the body is over (read to its end, failed or
   * cancelled). With `what`, errors read `<what>: <reason>`. A `byteStream`
   * is a readable byte stream (`type: "bytes"`). `cancelSends` tells
   * pyflare to stop sending when the reader cancels.
   */
  constructor(id, channel, done, { what = "", byteStream = false, cancelSends = false } = {}) {
    this.#id = id;
    this.#channel = channel;
    this.#done = done;
    this.#what = what;
    this.stream = new ReadableStream(
      {
        ...(byteStream ? { type: "bytes" } : {}),
        pull: (controller) => this.#pull(controller),
        cancel: () => {
          this.#queue = [];
          if (cancelSends && !this.#ended) channel.send({ type: "cancel", stream: id });
          this.#ended = true;
          this.#done();
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** Whether the reader waits for more of this body from pyflare. */
  get awaited() {
    return this.#wake !== null && !this.#ended;
  }

  /** Queues a chunk; the caller hands over bytes it will not reuse. */
  push(bytes) {
    // An empty chunk (the empty last chunk of an empty body) carries
    // nothing, and a byte stream refuses zero-length chunks.
    if (bytes.byteLength === 0) return;
    this.#queue.push(bytes);
    this.#wakeUp();
  }

  end(error) {
    this.#ended = true;
    this.#error = error ?? null;
    this.#wakeUp();
  }

  #wakeUp() {
    const wake = this.#wake;
    this.#wake = null;
    if (wake) wake();
  }

  async #pull(controller) {
    for (;;) {
      if (this.#queue.length > 0) {
        const chunk = this.#queue.shift();
        // Measured first: a byte stream's enqueue detaches the chunk.
        const bytes = chunk.byteLength;
        controller.enqueue(chunk);
        this.#channel.send({ type: "credit", stream: this.#id, bytes });
        return;
      }
      if (this.#ended) {
        this.#done();
        if (this.#error) controller.error(new Error(this.#what ? `${this.#what}: ${this.#error}` : this.#error));
        else controller.close();
        return;
      }
      await new Promise((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}
