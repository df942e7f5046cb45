// Turns protocol messages into worker events (fetch for now) and streams
// request and response bodies as binary chunks with credit-based flow
// control: neither side holds more than one window of a body in memory.

import { ExecutionContext, ScheduledController } from "./workers_module.mjs";
import { describeError, describeForClient } from "./errors.mjs";

/** `request.cf` as a local request has it; Cloudflare fills this at its edge. */
const LOCAL_CF = Object.freeze({
  // Not emulated: real geolocation and TLS data; these are fixed local values.
  colo: "LOCAL",
  country: "XX",
  httpProtocol: "HTTP/1.1",
  clientTcpRtt: 0,
  asn: 0,
  asOrganization: "pyflare",
});

const NON_RESPONSE = "Incorrect type for Promise: the Promise did not resolve to 'Response'.";

export class Events {
  #worker;
  #channel;
  /** request id -> IncomingBody */
  #incoming = new Map();

  constructor(worker, channel) {
    this.#worker = worker;
    this.#channel = channel;
  }

  onMessage(message) {
    switch (message.type) {
      case "fetch":
        this.#fetch(message);
        break;
      case "scheduled":
        this.#scheduled(message);
        break;
      case "body_end":
        this.#incoming.get(message.stream)?.end(message.error);
        break;
      case "credit":
        this.#channel.credit(message.stream, message.bytes);
        break;
      case "cancel":
        this.#channel.cancel(message.stream);
        this.#incoming.get(message.stream)?.end("request cancelled");
        break;
      default:
        this.#channel.send({ type: "log", level: "warn", message: `unknown message ${message.type}` });
    }
  }

  onChunk(stream, data) {
    this.#incoming.get(stream)?.push(data);
  }

  async #fetch(message) {
    const { id } = message;
    const channel = this.#channel;
    let body = null;
    if (message.has_body) {
      const incoming = new IncomingBody(id, channel, () => this.#incoming.delete(id));
      this.#incoming.set(id, incoming);
      body = incoming.stream;
    }
    let response;
    try {
      const request = new Request(message.url, {
        method: message.method,
        headers: message.headers,
        body,
        duplex: "half",
        redirect: "manual",
      });
      Object.defineProperty(request, "cf", { value: LOCAL_CF, enumerable: true });
      const ctx = new ExecutionContext(this.#worker.background);
      response = await this.#worker.callDefault("fetch", [request], ctx);
      if (!(response instanceof Response)) {
        if (this.#worker.isPyProxy(response)) response.destroy();
        throw new TypeError(NON_RESPONSE);
      }
    } catch (error) {
      this.#incoming.delete(id);
      channel.send({ type: "exception", id, message: describeForClient(error) });
      return;
    }
    await this.#respond(id, response);
    this.#incoming.delete(id);
  }

  /**
   * Sends the response head and body. A body that is already at hand (a
   * string or bytes, or a stream that has finished) leaves with the head in
   * one write, as one last chunk; a streaming body is sent as it comes, the
   * head at once, under the credit window.
   *
   * Not emulated: workerd sends Content-Length for a body of known length
   * (a string or bytes) and chunks every stream; here any body that is
   * complete when it is first read gets a Content-Length, a stream that
   * already finished included.
   */
  async #respond(id, response) {
    const channel = this.#channel;
    const headers = [];
    for (const [name, value] of response.headers) headers.push([name, value]);
    const head = {
      type: "response",
      id,
      status: response.status,
      status_text: response.statusText,
      headers,
      has_body: response.body !== null,
    };
    if (response.body === null) {
      channel.send(head);
      return;
    }
    let headSent = false;
    const sendHead = () => {
      if (!headSent) channel.send(head);
      headSent = true;
    };
    // A client that goes away stops even a stream that is waiting for data.
    const stop = channel.openStream(id).then(() => null);
    const reader = response.body.getReader();
    const goAway = () => reader.cancel(new Error("The client went away.")).catch(() => {});
    try {
      let pending = reader.read();
      let next = await soon(pending);
      for (;;) {
        if (next === NOT_YET) {
          sendHead();
          next = await Promise.race([pending, stop]);
        }
        if (next === null) {
          await goAway();
          break;
        }
        if (next.done) {
          if (!headSent) head.body_length = 0;
          sendHead();
          break;
        }
        const bytes = toBytes(next.value);
        pending = reader.read();
        const following = await soon(Promise.race([pending, stop]));
        if (following?.done) {
          if (!headSent) head.body_length = bytes.byteLength;
          sendHead();
          // Cut short (the client went away): end the stream as a cancel does.
          if (!(await channel.sendChunk(id, bytes, true))) channel.endStream(id);
          return;
        }
        sendHead();
        if (!(await channel.sendChunk(id, bytes))) {
          await goAway();
          break;
        }
        next = following;
      }
      channel.endStream(id);
    } catch (error) {
      sendHead();
      channel.endStream(id, describeError(error));
    }
  }

  async #scheduled(message) {
    const controller = new ScheduledController(message.cron, message.scheduled_time);
    const ctx = new ExecutionContext(this.#worker.background);
    let result;
    try {
      await this.#worker.callDefault("scheduled", [controller], ctx);
      // The first rejected waitUntil promise marks the run failed.
      await ctx.settle();
      result = { outcome: "ok" };
    } catch (error) {
      result = { outcome: "exception", message: describeError(error) };
    }
    this.#channel.send({
      type: "event_result",
      id: message.id,
      ...result,
      no_retry: controller.noRetryCalled,
    });
  }
}

const NOT_YET = Symbol("not yet");

/**
 * `promise`'s result if it settles before the event loop's next turn (the
 * data is already there), else NOT_YET.
 */
function soon(promise) {
  return Promise.race([promise, new Promise((resolve) => setImmediate(resolve, NOT_YET))]);
}

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError("This ReadableStream did not return bytes.");
}

/** A request body arriving from pyflare as chunks of one stream. */
class IncomingBody {
  #queue = [];
  #ended = false;
  #error = null;
  #wake = null;
  #id;
  #channel;
  #done;

  constructor(id, channel, done) {
    this.#id = id;
    this.#channel = channel;
    this.#done = done;
    this.stream = new ReadableStream(
      {
        pull: (controller) => this.#pull(controller),
        cancel: () => {
          this.#queue = [];
          this.#done();
        },
      },
      { highWaterMark: 0 },
    );
  }

  push(data) {
    // Copy: the frame buffer is reused by the decoder's concatenation.
    this.#queue.push(new Uint8Array(data));
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
        controller.enqueue(chunk);
        this.#channel.send({ type: "credit", stream: this.#id, bytes: chunk.byteLength });
        return;
      }
      if (this.#ended) {
        this.#done();
        if (this.#error) controller.error(new Error(`request body: ${this.#error}`));
        else controller.close();
        return;
      }
      await new Promise((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}
