// Builds the worker's `env`: vars and secrets from the handshake, then one
// object per configured binding, made by that binding's shim (JavaScript
// shipped by pyflare's Rust side, see bindings/src/<name>/shim.mjs).

import { Buffer } from "node:buffer";

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
    env[binding.name] = shim.create(binding.name, (method, args, body, options) =>
      channel.call(binding.name, method, args, body, options),
    );
  }
  return env;
}
