// `_pyodide_entrypoint_helper`: what Cloudflare's SDK imports from workerd
// to reach JavaScript modules, the worker entrypoint class and waitUntil.

import { pathToFileURL } from "node:url";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { WorkerEntrypoint } from "./workers_module.mjs";

/** `_pyodide_entrypoint_helper`, as workerd's PyodideEntrypointHelper. */
export function makeEntrypointHelper(workersModule, init) {
  const patched = new WeakSet();
  const socketsModule = Object.freeze({
    connect() {
      // Not emulated: cloudflare:sockets (TCP sockets) is not provided yet.
      throw new Error("cloudflare:sockets connect() is not supported by pyflare");
    },
  });
  let envOverride = null;
  return {
    doAnImport: async (name) => {
      if (name === "cloudflare:workers") return workersModule;
      if (name === "cloudflare:sockets") return socketsModule;
      // The SDK's own JavaScript files, by a plain file name: nothing else
      // on disk can be imported this way.
      const sdkPrefix = "python_modules/workers/";
      const file = name.startsWith(sdkPrefix) ? name.slice(sdkPrefix.length) : "";
      if (/^[A-Za-z0-9_][A-Za-z0-9_.-]*\.m?js$/.test(file)) {
        for (const root of [init.python_modules_dir, init.sdk_dir]) {
          const path = root && join(root, "workers", file);
          if (path && existsSync(path)) return import(pathToFileURL(path).href);
        }
      }
      throw new Error(`No such module "${name}".`);
    },
    cloudflareWorkersModule: workersModule,
    cloudflareSocketsModule: socketsModule,
    workerEntrypoint: WorkerEntrypoint,
    patchWaitUntil(ctx) {
      if (Object.prototype.toString.call(ctx) !== "[object ExecutionContext]") return;
      if (patched.has(ctx)) return;
      patched.add(ctx);
      const original = ctx.waitUntil.bind(ctx);
      ctx.waitUntil = (promise) => {
        if (promise && typeof promise.copy === "function" && typeof promise.destroy === "function") {
          const copy = promise.copy();
          original(
            (async () => {
              try {
                return await copy;
              } finally {
                copy.destroy();
              }
            })(),
          );
          return;
        }
        original(promise);
      };
    },
    *patch_env_helper(patch) {
      const previous = envOverride;
      envOverride = patch;
      try {
        yield;
      } finally {
        envOverride = previous;
      }
    },
  };
}
