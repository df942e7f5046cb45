// Loads Pyodide, the Python SDK and the user's worker, and builds the
// runtime surface Cloudflare's `workers` SDK expects of workerd
// (shared spec python-runtime.md §1-2).

import { pathToFileURL } from "node:url";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { makeWorkerGlobals } from "./globals.mjs";
import { compatFlags } from "./compat.mjs";
import { BackgroundWork, makeWorkersModule, WorkerEntrypoint } from "./workers_module.mjs";
import { buildEnv } from "./env.mjs";
import { describeError } from "./errors.mjs";

const SESSION = "/session";
const MODULE_ROOT = `${SESSION}/metadata`;
const PYTHON_MODULES = `${SESSION}/python_modules`;
const PINNED_SDK = `${SESSION}/sdk`;
const PYFLARE_LIB = `${SESSION}/pyflare`;

/**
 * Loads the worker described by `init` (the `worker` part of `hello`).
 * Returns a `Worker` that dispatches events into Python.
 */
export async function loadWorker(init, channel) {
  const log = (level, message) => channel.send({ type: "log", level, message });
  const pyodideModule = await import(pathToFileURL(join(init.pyodide_dir, "pyodide.mjs")).href);
  const globals = makeWorkerGlobals();
  const py = await pyodideModule.loadPyodide({
    indexURL: init.pyodide_dir.endsWith("/") ? init.pyodide_dir : `${init.pyodide_dir}/`,
    jsglobals: globals.view,
    env: { HOME: SESSION, PYTHONHASHSEED: "111" },
    stdout: (line) => log("info", line),
    stderr: (line) => log("warn", line),
  });

  const background = new BackgroundWork((error) =>
    log("error", `Uncaught (in waitUntil) ${describeError(error)}`),
  );
  const env = await buildEnv(init, channel);
  const workersModule = makeWorkersModule(env, background);
  const flags = compatFlags(init.compatibility_date, init.compatibility_flags);

  mountReadOnlyTree(py, init.module_root, MODULE_ROOT);
  const userModules = init.python_modules_dir && existsSync(init.python_modules_dir);
  if (userModules) mountReadOnlyTree(py, init.python_modules_dir, PYTHON_MODULES);
  const userSdk = userModules && existsSync(join(init.python_modules_dir, "workers", "__init__.py"));
  if (!userSdk) mountReadOnlyTree(py, init.sdk_dir, PINNED_SDK);
  mountReadOnlyTree(py, init.host_python_dir, PYFLARE_LIB);

  py.registerJsModule("_pyodide_entrypoint_helper", makeEntrypointHelper(workersModule, init));
  py.registerJsModule("_cloudflare_compat_flags", flags);
  // Not emulated: Pyodide's package loader; packages come from python_modules/.
  py.loadPackage = async () => {
    throw new Error("pyodide.loadPackage is disabled in Python Workers; add the package to pyproject.toml");
  };

  py.runPython(`
import sys
sys.path[:0] = [${JSON.stringify(MODULE_ROOT)}]
sys.path.append(${JSON.stringify(PYFLARE_LIB)})
`);
  if (userModules) {
    py.runPython(`
import site, sys
_before = list(sys.path)
site.addsitedir(${JSON.stringify(PYTHON_MODULES)})
_added = [p for p in sys.path if p not in _before]
sys.path[:] = [p for p in sys.path if p not in _added]
sys.path[1:1] = _added
del _before, _added
`);
  }
  if (!userSdk) py.runPython(`import sys; sys.path.append(${JSON.stringify(PINNED_SDK)})`);

  const entrypoints = py.pyimport("_pyflare.entrypoints");
  const legacyAllowed = !flags.python_no_global_handlers;
  const info = await entrypoints.load.callPromising(init.main_module, legacyAllowed);
  return new Worker(py, entrypoints, info, env, background);
}

/** Mounts a host folder into Pyodide's file system. */
function mountReadOnlyTree(py, hostPath, mountPoint) {
  py.FS.mkdirTree(mountPoint);
  // Not emulated: workerd mounts these read-only; NODEFS writes through to disk.
  py.FS.mount(py.FS.filesystems.NODEFS, { root: hostPath }, mountPoint);
}

/** `_pyodide_entrypoint_helper`, as workerd's PyodideEntrypointHelper. */
function makeEntrypointHelper(workersModule, init) {
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
      const sdkPrefix = "python_modules/workers/";
      if (name.startsWith(sdkPrefix) && init.python_modules_dir) {
        const file = join(init.python_modules_dir, "workers", name.slice(sdkPrefix.length));
        if (existsSync(file)) return import(pathToFileURL(file).href);
      }
      if (name.startsWith(sdkPrefix)) {
        const file = join(init.sdk_dir, "workers", name.slice(sdkPrefix.length));
        if (existsSync(file)) return import(pathToFileURL(file).href);
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

/** A loaded worker: dispatches events to its Python handlers. */
export class Worker {
  constructor(py, entrypoints, info, env, background) {
    this.py = py;
    this.entrypoints = entrypoints;
    this.info = info;
    this.env = env;
    this.background = background;
  }

  /** Calls `method` of the default export, as workerd calls a module worker. */
  async callDefault(method, args, ctx) {
    const { info } = this;
    let result;
    if (info.default_class) {
      if (!info.default_methods.includes(method)) {
        throw new Error(`Handler does not export a ${method}() function.`);
      }
      const relaxed = method === "fetch" || method === "test";
      // Class instances get env and ctx from the constructor; the handler
      // still receives three arguments, the last two undefined.
      const padded = [args[0], undefined, undefined];
      result = await this.entrypoints.call.callPromising(
        info.default_class,
        ctx,
        this.env,
        method,
        relaxed,
        padded,
      );
    } else if (info.legacy.includes(`on_${method}`)) {
      result = await this.entrypoints.call_legacy.callPromising(`on_${method}`, [args[0], this.env, ctx]);
    } else {
      throw new Error(`Handler does not export a ${method}() function.`);
    }
    return result;
  }

  isPyProxy(value) {
    return value instanceof this.py.ffi.PyProxy;
  }
}
