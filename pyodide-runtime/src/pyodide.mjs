// Loads Pyodide, the Python SDK and the user's worker, and builds the
// runtime surface Cloudflare's `workers` SDK expects of workerd
// (shared spec python-runtime.md §1-2).

import { pathToFileURL } from "node:url";
import { existsSync, readFileSync, writeFileSync, unlinkSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { createHash } from "node:crypto";
import { mkdir, writeFile, rename } from "node:fs/promises";
import { Buffer } from "node:buffer";
import { makeWorkerGlobals } from "./globals.mjs";
import { compatFlags } from "./compat.mjs";
import { BackgroundWork, makeWorkersModule, WorkerEntrypoint } from "./workers_module.mjs";
import { buildEnv } from "./env.mjs";
import { describeError } from "./errors.mjs";
import { makeRestrictedApi, mountReadOnly } from "./sandbox.mjs";

const SESSION = "/session";
const MODULE_ROOT = `${SESSION}/metadata`;
const PYTHON_MODULES = `${SESSION}/python_modules`;
const PINNED_SDK = `${SESSION}/sdk`;
const PYFLARE_LIB = `${SESSION}/pyflare`;

/**
 * Loads the worker described by `init` (the `worker` part of `hello`).
 * Returns a `Worker` that dispatches events into Python.
 *
 * Two memory snapshots make later starts fast: a baseline, taken once
 * Pyodide, the SDK and pyflare's glue are imported (it changes only with
 * them and `python_modules/`), and a dedicated one, taken after the worker's
 * own imports (it changes with every edit). A start restores the dedicated
 * snapshot when it matches, else the baseline and imports the worker, else
 * starts afresh; whatever was missing is written for next time.
 */
export async function loadWorker(init, channel) {
  const stage = await prepareWorker(init, channel, false);
  return stage.finish(init.snapshot_path);
}

/**
 * Everything up to the worker's own imports. With `standby`, the dedicated
 * snapshot is not used (the code may change before `finish`); pyflare keeps
 * such a host ready so a reload only has to import the new code.
 */
export async function prepareWorker(init, channel, standby) {
  const log = (level, message) => channel.send({ type: "log", level, message });
  const pyodideModule = await import(pathToFileURL(join(init.pyodide_dir, "pyodide.mjs")).href);
  const globals = makeWorkerGlobals(init.name);
  const background = new BackgroundWork((error) =>
    log("error", `Uncaught (in waitUntil) ${describeError(error)}`),
  );
  const env = await buildEnv(init, channel);
  const workersModule = makeWorkersModule(env, background);
  const flags = compatFlags(init.compatibility_date, init.compatibility_flags);
  const helper = makeEntrypointHelper(workersModule, init);
  const pyodideApi = makeRestrictedApi();
  const known = { helper, flags, workersModule, env, pyodideApi: pyodideApi.module, pyodideInternal: pyodideApi.internal, pyflareHost: channel.pythonApi };
  const dedicated = new SnapshotFile(standby ? null : init.snapshot_path, known, log);
  const baseline = new SnapshotFile(init.baseline_snapshot_path, known, log);

  const userModules = init.python_modules_dir && existsSync(init.python_modules_dir);
  const userSdk = userModules && existsSync(join(init.python_modules_dir, "workers", "__init__.py"));
  const options = {
    indexURL: init.pyodide_dir.endsWith("/") ? init.pyodide_dir : `${init.pyodide_dir}/`,
    // Mounted before Python starts: a snapshot restore reloads the native
    // extensions (.so) it recorded from these folders.
    fsInit: async (FS) => {
      mountReadOnly(FS, init.module_root, MODULE_ROOT);
      if (userModules) mountReadOnly(FS, init.python_modules_dir, PYTHON_MODULES);
      if (!userSdk) mountReadOnly(FS, init.sdk_dir, PINNED_SDK);
      mountReadOnly(FS, init.host_python_dir, PYFLARE_LIB);
    },
    jsglobals: globals.view,
    env: { HOME: SESSION, PYTHONHASHSEED: "111" },
    stdout: (line) => log("info", line),
    stderr: (line) => log("warn", line),
  };
  const restore = async (file, makeMore) => {
    const bytes = file.read();
    if (!bytes) return null;
    try {
      const py = await pyodideModule.loadPyodide({
        ...options,
        _loadSnapshot: bytes,
        _snapshotDeserializer: (description) => file.deserialize(description),
        _makeSnapshot: makeMore,
      });
      return py;
    } catch (error) {
      // The file's checksum was right, so this worker cannot be restored
      // from a snapshot; remember that instead of rebuilding every time.
      log("warn", `[pyflare] a cached snapshot could not be restored (${error.message}); not using one for this code`);
      file.discard();
      file.refuse(`restore failed: ${error.message}`);
      return null;
    } finally {
      // Pyodide has copied the snapshot into its memory by now, but keeps
      // its options. Detaching the file's buffer frees its ~30 MB at once
      // instead of at the next full garbage collection, which an idle host
      // may not run for long.
      bytes.buffer.transfer(0);
    }
  };

  // A standby host takes no snapshot: snapshot-taking mode runs slower, and
  // it should serve the reloaded code at full speed.
  // Only a snapshot-making host takes snapshots: Pyodide runs slower while
  // it can (it tracks every JS global access), so serving hosts never do.
  const takes = Boolean(init.take_snapshots) && !standby;
  const mayTakeDedicated = takes && dedicated.wanted();
  let origin = "restored";
  let makeMode = false;
  let baselineTaken = null;
  let py = await restore(dedicated, false);
  if (!py) {
    origin = "baseline";
    makeMode = mayTakeDedicated;
    py = await restore(baseline, makeMode);
  }
  if (!py) {
    origin = "fresh";
    makeMode = (takes && baseline.wanted()) || mayTakeDedicated;
    py = await pyodideModule.loadPyodide({ ...options, _makeSnapshot: makeMode });
  }

  py.registerJsModule("_pyodide_entrypoint_helper", helper);
  py.registerJsModule("_cloudflare_compat_flags", flags);
  // Synchronous binding calls (`_pyflare.sync`).
  py.registerJsModule("_pyflare_host", channel.pythonApi);
  // Not emulated: Pyodide's package loader; packages come from python_modules/.
  py.loadPackage = async () => {
    throw new Error("pyodide.loadPackage is disabled in Python Workers; add the package to pyproject.toml");
  };

  if (origin === "fresh") {
    py.runPython(`import sys; sys.path.append(${JSON.stringify(PYFLARE_LIB)})`);
    py.pyimport("_pyflare.bootstrap").setup_paths(
      MODULE_ROOT,
      userModules ? PYTHON_MODULES : null,
      userSdk ? null : PINNED_SDK,
    );
    py.runPython("import workers, _pyflare.entrypoints");
    if (makeMode) baselineTaken = await baseline.take(py);
  }
  // After the SDK's imports (the baseline snapshot records Pyodide's own
  // API objects it holds), before any of the worker's code.
  pyodideApi.attach(py);

  const entrypoints = py.pyimport("_pyflare.entrypoints");
  if (standby) {
    // Compile the import machinery's code paths now, not when the new code
    // arrives: V8 compiles WebAssembly functions lazily on first use.
    py.pyimport("_pyflare.bootstrap").warm_up();
  }
  return {
    origin,
    /** Imports the worker (unless restored) and returns it. */
    async finish(snapshotPath) {
      if (origin !== "fresh") {
        // Restored state: fresh RNG seeds (workerd reseeds before the first
        // request too) and no stale directory listings.
        entrypoints.after_restore();
      }
      if (origin === "restored") {
        return new Worker(py, entrypoints, entrypoints.describe(), env, background, origin);
      }
      const legacyAllowed = !flags.python_no_global_handlers;
      const info = await entrypoints.load.callPromising(init.main_module, legacyAllowed);
      const taken = await new SnapshotFile(takes ? snapshotPath : null, known, log).take(py);
      if (takes) {
        // Tell pyflare the snapshots are on disk; it then stops this host.
        Promise.all([taken?.written, baselineTaken?.written]).then(() =>
          setTimeout(() => channel.send({ type: "snapshot_done" }), 0),
        );
      }
      return new Worker(py, entrypoints, info, env, background, standby ? "standby" : origin);
    },
  };
}

/** SHA-256 of `bytes`, hashed 1 MiB at a time so the event loop keeps turning. */
async function sha256InSlices(bytes) {
  const hash = createHash("sha256");
  const slice = 1024 * 1024;
  for (let offset = 0; offset < bytes.byteLength; offset += slice) {
    hash.update(bytes.subarray(offset, Math.min(offset + slice, bytes.byteLength)));
    await new Promise((resolve) => setImmediate(resolve));
  }
  return hash.digest();
}

/**
 * One memory snapshot on disk: the bytes Pyodide makes, then a SHA-256 of
 * them, so a truncated or corrupt file is never restored. Python globals may
 * hold the JS objects pyflare registers (the entrypoint helper, the compat
 * flags, cloudflare:workers and its env); they are recorded by name and
 * handed back on restore. Any other JS object means the worker cannot be
 * snapshotted; a `.nosnap` file next to the snapshot says why, so later
 * starts do not retry.
 */
class SnapshotFile {
  #path;
  #known;
  #log;

  constructor(path, known, log) {
    this.#path = path;
    this.#known = known;
    this.#log = log;
  }

  wanted() {
    return Boolean(this.#path) && !existsSync(`${this.#path}.nosnap`);
  }

  read() {
    if (!this.#path || !existsSync(this.#path)) return null;
    try {
      const file = readFileSync(this.#path);
      if (file.length < 1024 * 1024) throw new Error("too short");
      const body = file.subarray(0, file.length - 32);
      const digest = createHash("sha256").update(body).digest();
      if (!digest.equals(file.subarray(file.length - 32))) throw new Error("checksum mismatch");
      return body;
    } catch (error) {
      this.#log("warn", `[pyflare] ignoring a damaged snapshot (${error.message}); rebuilding it`);
      this.discard();
      return null;
    }
  }

  discard() {
    try {
      unlinkSync(this.#path);
    } catch {}
  }

  /** Records why this snapshot is not taken, so later starts do not retry. */
  refuse(reason) {
    if (!this.#path) return;
    try {
      mkdirSync(dirname(this.#path), { recursive: true });
      writeFileSync(`${this.#path}.nosnap`, `${reason}\n`);
    } catch {}
  }

  deserialize(description) {
    const value = this.#known[description?.pyflare];
    if (value === undefined) throw new Error(`unknown snapshot object ${JSON.stringify(description)}`);
    return value;
  }

  async take(py) {
    if (!this.wanted() || existsSync(this.#path)) return;
    // Not emulated: restoring native extension modules (.so files from
    // python_modules) from a snapshot; such workers start without one.
    const native = py.pyimport("_pyflare.bootstrap").native_extension_modules().toJs();
    if (native.length > 0) {
      this.#log("info", `[pyflare] starting without a memory snapshot: native extension modules (${native.slice(0, 3).join(", ")}) are not snapshotted`);
      this.refuse(`native extension modules: ${native.join(", ")}`);
      return;
    }
    let bytes;
    try {
      bytes = py.makeMemorySnapshot({
        serializer: (object) => {
          for (const [name, value] of Object.entries(this.#known)) {
            if (object === value) return { pyflare: name };
          }
          throw new Error("a Python global holds a JavaScript object created at import time");
        },
      });
    } catch (error) {
      this.#log("info", `[pyflare] starting without a memory snapshot: ${error.message}`);
      this.refuse(error.message);
      return;
    }
    // Written after the worker is ready, off the start's critical path, and
    // without blocking the event loop (the CPU watchdog is running by then).
    const path = this.#path;
    const log = this.#log;
    const write = async () => {
      try {
        await mkdir(dirname(path), { recursive: true });
        const digest = await sha256InSlices(bytes);
        const tmp = `${path}.${process.pid}.tmp`;
        await writeFile(tmp, Buffer.concat([Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), digest]));
        await rename(tmp, path);
      } catch (error) {
        log("warn", `[pyflare] cannot write the snapshot: ${error.message}`);
      }
    };
    return { written: new Promise((resolve) => setTimeout(() => write().then(resolve), 0)) };
  }
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

/** A loaded worker: dispatches events to its Python handlers. */
export class Worker {
  constructor(py, entrypoints, info, env, background, origin) {
    this.origin = origin;
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
