// Builds the worker's `env`: vars (strings and JSON values) and secrets from
// the handshake. Bindings are added here as pyflare emulates them.

export function buildEnv(init /*, channel */) {
  const env = {};
  for (const [name, value] of Object.entries(init.vars ?? {})) {
    env[name] = value;
  }
  return env;
}
