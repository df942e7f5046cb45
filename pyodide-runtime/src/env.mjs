// Builds the worker's `env`: vars and secrets from the handshake, then one
// object per configured binding, made by that binding's shim (JavaScript
// shipped by pyflare's Rust side, see bindings/src/<name>/shim.mjs).

import { Buffer } from "node:buffer";
import { shimApi } from "./websockets.mjs";

/**
 * The shim module that made each binding object of `env`: a binding that
 * delivers events (a queue batch, an alarm) builds the handler's arguments
 * with its shim's `event(handler, payload, binding)`.
 */
export const shimOf = new WeakMap();

/**
 * Bindings with no `env` entry (their shim's `create` answered undefined,
 * as a queue's consumers do) that still deliver events: name -> shim.
 */
export const hiddenShims = new Map();

export async function buildEnv(init, channel) {
  const env = {};
  for (const [name, value] of Object.entries(init.vars ?? {})) {
    env[name] = value;
  }
  const shims = new Map();
  for (const binding of init.bindings ?? []) {
    let shim = shims.get(binding.kind);
    if (!shim) {
      const source = Buffer.from(binding.shim, "utf8").toString("base64");
      shim = await import(`data:text/javascript;base64,${source}`);
      shims.set(binding.kind, shim);
    }
    const object = shim.create(
      binding.name,
      (method, args, body, options) => channel.call(binding.name, method, args, body, options),
      binding.options ?? null,
      {
        websockets: shimApi,
        // A call that blocks the isolate until pyflare answers.
        callBlocking: (method, args, body) => channel.callBlocking(binding.name, method, args, body),
      },
    );
    if (object === undefined) {
      hiddenShims.set(binding.name, shim);
      continue;
    }
    env[binding.name] = object;
    if (object !== null && typeof object === "object") shimOf.set(object, shim);
  }
  return env;
}
