// What a worker gets from `cloudflare:workers` and the execution context
// passed to every event, shaped as workerd's (src/cloudflare/workers.ts).

/** Base classes; Python classes are wrapped in JS subclasses of these. */
export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}
export class WorkflowEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}
export class RpcTarget {}

/** Tracks `waitUntil` promises so their failures are logged. */
export class BackgroundWork {
  #log;

  constructor(log) {
    this.#log = log;
  }

  add(promise) {
    Promise.resolve(promise).catch((error) => this.#log(error));
  }
}

/** `ExecutionContext` as workerd passes it to fetch, scheduled and queue. */
export class ExecutionContext {
  #background;
  #own = [];

  constructor(background) {
    this.#background = background;
    this.props = {};
  }

  waitUntil(promise) {
    this.#own.push(Promise.resolve(promise));
    this.#background.add(promise);
  }

  /** Waits for this event's waitUntil work; throws the first failure. */
  async settle() {
    for (let i = 0; i < this.#own.length; i++) {
      await this.#own[i];
    }
  }

  passThroughOnException() {
    // Not emulated: there is no origin behind pyflare to pass through to.
  }

  get [Symbol.toStringTag]() {
    return "ExecutionContext";
  }
}

/** The controller passed to `scheduled`, as workerd's ScheduledController. */
export class ScheduledController {
  #noRetry = false;

  constructor(cron, scheduledTime) {
    this.cron = cron;
    this.scheduledTime = scheduledTime;
    // Cloudflare's docs list `type`; workerd leaves it undefined. Documented value.
    this.type = "scheduled";
  }

  noRetry() {
    this.#noRetry = true;
  }

  get noRetryCalled() {
    return this.#noRetry;
  }
}

/** The `cloudflare:workers` module namespace for this worker. */
export function makeWorkersModule(env, background) {
  return Object.freeze({
    WorkerEntrypoint,
    DurableObject,
    WorkflowEntrypoint,
    RpcTarget,
    env,
    waitUntil: (promise) => background.add(promise),
  });
}
