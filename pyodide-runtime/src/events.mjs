// Turns `event` messages into worker events, by `kind` (fetch, scheduled,
// a binding's own events),
// and streams request and response bodies as binary chunks with
// credit-based flow control: neither side holds more than one window of a
// body in memory. A fetch is answered by a `response` head; every other
// end of an event (a fetch that raised, a scheduled run) by `event_result`.
// Events that hang, and faults that end the isolate, are found by
// `faults.mjs`.

// Node's own, not the global one actors.mjs counts as Python's steps.
import { setImmediate } from "node:timers";
import { ExecutionContext, ScheduledController } from "./workers_module.mjs";
import { describeError, describeForCaller, describeForClient } from "./errors.mjs";
import { HangWatch, MemoryLimit, watchFatal } from "./faults.mjs";
import { IncomingBody, toBytes } from "./bodies.mjs";
import { hiddenShims, shimOf } from "./env.mjs";
import { wholeTextBody } from "./globals.mjs";
import { socketOf, wire } from "./websockets.mjs";

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
  #hangs;
  #memory;
  /** Set once the isolate is given up; pyflare stops this host. */
  #aborted = false;

  /**
   * `limits.memoryBytes` is the isolate's memory limit (0: none);
   * `limits.baseline` what Node itself held at start (`nodeBaseline()`).
   */
  constructor(worker, channel, limits = {}) {
    this.#worker = worker;
    this.#channel = channel;
    this.#memory = new MemoryLimit(worker.py, limits.memoryBytes ?? 0, limits.baseline, ({ wasm, heap }) =>
      this.#abort(
        "memory_limit",
        "Worker exceeded memory limit.\n" +
          `pyflare counted ${megabytes(wasm + heap)} (Pyodide's memory ${megabytes(wasm)}, ` +
          `the JavaScript heap ${megabytes(heap)}) against the limit of ${megabytes(limits.memoryBytes)}; ` +
          "`pyflare dev --memory-limit MB` changes the limit.",
      ),
    );
    this.#hangs = new HangWatch(
      () => this.#waiting(),
      () => this.#memory.check(),
    );
    watchFatal(worker.py, (message) => this.#abort("fatal", message));
  }

  /**
   * Gives up the isolate: pyflare fails its events with `reason` and
   * starts another host. Sent at once, also from inside an allocation.
   */
  #abort(reason, message) {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#channel.sendNow({ type: "abort", reason, message });
  }

  /** Whether something pyflare will send can still move an event on. */
  #waiting() {
    if (this.#channel.waiting()) return true;
    for (const body of this.#incoming.values()) {
      if (body.awaited) return true;
    }
    return false;
  }

  /**
   * An event ended: the memory is looked at once the last one in flight
   * ends. While others run, the hang watch's tick looks at it every 20 ms.
   */
  #ended() {
    if (this.#hangs.inFlight === 0) this.#memory.check();
  }

  #log(level, message) {
    this.#channel.send({ type: "log", level, message });
  }

  onMessage(message) {
    if (this.#aborted) return;
    switch (message.type) {
      case "event":
        this.#event(message);
        break;
      case "body_end":
        this.#incoming.get(message.stream)?.end(message.error);
        break;
      // Credit for every body this host sends reaches the channel in main.mjs.
      case "cancel":
        this.#channel.cancel(message.stream);
        this.#incoming.get(message.stream)?.end("request cancelled");
        break;
      default:
        this.#channel.send({ type: "log", level: "warn", message: `unknown message ${message.type}` });
    }
  }

  /** Runs one event by its kind; a new kind is a case here. */
  #event(message) {
    switch (message.kind) {
      case "fetch":
        this.#fetch(message);
        break;
      case "scheduled":
        this.#scheduled(message);
        break;
      case "binding":
        this.#binding(message);
        break;
      default:
        this.#finish(message.id, "exception", `pyflare's host cannot run ${message.kind} events`);
    }
  }

  /** Ends an event that has no response head: `outcome` ok or exception. */
  #finish(id, outcome, message, result) {
    const end = { type: "event_result", id, outcome };
    if (message !== undefined) end.message = message;
    if (result !== undefined) end.result = result;
    this.#channel.send(end);
  }

  onChunk(stream, data) {
    // Copy: the frame buffer is reused by the decoder's concatenation.
    this.#incoming.get(stream)?.push(new Uint8Array(data));
  }

  async #fetch(message) {
    const { id } = message;
    // `answered` once the head or an exception is sent; `hungBody` ends a
    // streaming body that hangs.
    const event = { answered: false, hungBody: null };
    this.#hangs.begin(id, (hung) => {
      this.#incoming.get(id)?.end("request cancelled");
      this.#incoming.delete(id);
      if (event.answered) {
        event.hungBody?.(hung);
      } else {
        event.answered = true;
        this.#finish(id, "exception", hung);
      }
    });
    try {
      await this.#handleFetch(message, event);
    } finally {
      this.#hangs.end(id);
      this.#incoming.delete(id);
      this.#ended();
    }
  }

  async #handleFetch(message, event) {
    const { id } = message;
    const channel = this.#channel;
    let body = null;
    if (message.has_body) {
      const incoming = new IncomingBody(id, channel, () => this.#incoming.delete(id), { what: "request body" });
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
      if (!event.answered) {
        event.answered = true;
        this.#finish(id, "exception", describeForClient(error));
      }
      return;
    }
    // Answered already: it was found hung, and its client has the error.
    if (event.answered) return;
    event.answered = true;
    await this.#respond(id, response, event);
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
  async #respond(id, response, event) {
    const channel = this.#channel;
    const headers = [];
    for (const [name, value] of response.headers) headers.push([name, value]);
    const socket = socketOf(response);
    if (socket) {
      // pyflare's front completes the client's upgrade and connects it.
      const status_text = response.statusText;
      channel.send({ type: "response", id, status: 101, status_text, headers, has_body: false, websocket: true });
      wire(socket, id);
      return;
    }
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
    // Built from a string: sent as it is, without reading its stream back.
    const text = wholeTextBody(response);
    if (text !== null) {
      const whole = toBytes(text);
      head.body_length = whole.byteLength;
      channel.send(head);
      if (!(await channel.sendWhole(id, whole))) channel.endStream(id);
      return;
    }
    let headSent = false;
    const sendHead = () => {
      if (!headSent) channel.send(head);
      headSent = true;
    };
    // A client that goes away stops even a stream that is waiting for data,
    // as does a stream found hung (its message, a string, ends the race).
    const hung = new Promise((resolve) => {
      event.hungBody = resolve;
    });
    const stop = Promise.race([channel.openStream(id).then(() => null), hung]);
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
        if (typeof next === "string") {
          // workerd resets the connection of a response whose body hangs.
          reader.cancel(new Error(next)).catch(() => {});
          this.#log("error", next);
          channel.endStream(id, next);
          return;
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
      // The body's source failed after the head was sent: the client's
      // connection is reset, as workerd resets it, and the error logged.
      sendHead();
      const text = describeForClient(error);
      this.#log("error", `the response body failed after its headers were sent; the connection was reset:\n${text}`);
      channel.endStream(id, text);
    }
  }

  /**
   * A binding's own event (a queue batch, an alarm, a call to a Durable
   * Object): the binding's shim builds the handler's arguments from the
   * payload (`event(handler, payload, binding)` answers `{args, finish}`),
   * and `finish(value, error)` reports, as JSON, what came of them, given
   * what the handler returned (after the shim's optional async
   * `settle(value)`, which may read a Response's body, say) or raised. With
   * `instance` (see actors.mjs) the handler is `method` of that instance
   * of one of the worker's classes, not of the default export; with
   * `instance` and `drop: true`, the instance is forgotten (evicted).
   */
  #binding(message) {
    const target = this.#worker.env[message.binding];
    const shim = target ? shimOf.get(target) : hiddenShims.get(message.binding);
    if (typeof shim?.event !== "function") {
      this.#finish(message.id, "exception", `the binding ${message.binding} delivers no events`);
      return;
    }
    let made;
    try {
      made = shim.event(message.handler, message.payload, target);
    } catch (error) {
      this.#finish(message.id, "exception", describeError(error));
      return;
    }
    const args = made.args ?? [];
    const report = (value, error) =>
      made.finish?.(value, error === undefined ? undefined : describeForCaller(error)) ?? null;
    const settle = (value) => (made.settle ? made.settle(value) : value);
    const actors = this.#worker.actors;
    let run = async (ctx) => settle(await this.#worker.callDefault(message.handler, args, ctx));
    if (made.instance && made.drop) {
      run = async () => settle(!made.keep?.() && actors.drop(made.instance.className, made.instance.key));
    } else if (made.instance) {
      run = async () => settle(await actors.call(made.instance, made.method, made.mode ?? "rpc", args));
    }
    this.#runHandler(message.id, message.handler, run, report);
  }

  #scheduled(message) {
    const controller = new ScheduledController(message.cron, message.scheduled_time);
    this.#runHandler(
      message.id,
      "scheduled",
      (ctx) => this.#worker.callDefault("scheduled", [controller], ctx),
      () => ({ no_retry: controller.noRetryCalled }),
    );
  }

  /**
   * Runs `handler` of the worker for an event without a response (`run`
   * calls it with a fresh context), and ends the event once: `ok` after the
   * handler and its waitUntil promises, else `exception` (raised, rejected
   * or hung), with what `report(value, error)` says then.
   */
  async #runHandler(id, handler, run, report) {
    const ctx = new ExecutionContext(this.#worker.background);
    let sent = false;
    const send = (outcome, text, value, error) => {
      if (sent) return;
      sent = true;
      let result = null;
      try {
        result = report(value, error);
      } catch (failure) {
        text = text ?? describeError(failure);
        outcome = "exception";
      }
      this.#finish(id, outcome, text, result);
    };
    const key = `${handler}:${id}`;
    this.#hangs.begin(key, (hung) => send("exception", hung, undefined, new Error(hung)));
    try {
      const value = await run(ctx);
      // The first rejected waitUntil promise marks the run failed.
      await ctx.settle();
      send("ok", undefined, value);
    } catch (error) {
      send("exception", describeError(error), undefined, error);
    } finally {
      this.#hangs.end(key);
      this.#ended();
    }
  }
}

const NOT_YET = Symbol("not yet");

function megabytes(bytes) {
  return `${Math.round(bytes / (1024 * 1024))} MB`;
}

/**
 * `promise`'s result if it settles before the event loop's next turn (the
 * data is already there), else NOT_YET.
 */
function soon(promise) {
  return Promise.race([promise, new Promise((resolve) => setImmediate(resolve, NOT_YET))]);
}

