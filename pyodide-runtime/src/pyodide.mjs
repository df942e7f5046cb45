// Loads Pyodide, the Python SDK and the user's worker, and builds the
// runtime surface Cloudflare's `workers` SDK expects of workerd
// (shared spec python-runtime.md §1-2).

import { pathToFileURL } from "node:url";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { makeWorkerGlobals } from "./globals.mjs";
import { setBinaryTypeDefault } from "./websockets.mjs";
import { compatFlags } from "./compat.mjs";
import { BackgroundWork, makeWorkersModule } from "./workers_module.mjs";
import { buildEnv } from "./env.mjs";
import { describeError } from "./errors.mjs";
import { makeRestrictedApi, mountReadOnly } from "./sandbox.mjs";
import { SnapshotFile } from "./snapshots.mjs";
import { makeEntrypointHelper } from "./entrypoint_helper.mjs";
import { Worker } from "./worker.mjs";
import { preloadingOptions, restoreHandles, sessionDylibs } from "./dylibs.mjs";

const SESSION = "/session";
const MODULE_ROOT = `${SESSION}/metadata`;
const PYTHON_MODULES = `${SESSION}/python_modules`;
const PINNED_SDK = `${SESSION}/sdk`;
const PYFLARE_LIB = `${SESSION}/pyflare`;

/**
 * Loads the worker described by `init` (the `worker` part of `hello`).
 * Returns a `Worker` that dispatches events into Python.
 *
 * Memory snapshots make later starts fast: a baseline, taken once Pyodide,
 * the SDK and pyflare's glue are imported (it changes only with them and
 * `python_modules/`); for a worker with `python_modules/`, a packages
 * snapshot, the baseline with the modules of `python_modules/` the worker
 * imports imported too (keyed as the baseline); and a dedicated one, taken
 * after the worker's own imports (it changes with every edit). A start
 * restores the dedicated snapshot when it matches, else the packages or
 * the baseline snapshot and imports the worker, else starts afresh;
 * whatever was missing is written for next time by a snapshot-making host.
 * A snapshot whose worker loaded native extension modules is made by a
 * host that loads them before Python starts, as its restore does
 * (`dylibs.mjs`).
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
  setBinaryTypeDefault(flags.websocket_standard_binary_type ? "blob" : "arraybuffer");
  const helper = makeEntrypointHelper(workersModule, init);
  const pyodideApi = makeRestrictedApi();
  const known = { helper, flags, workersModule, env, pyodideApi: pyodideApi.module, pyodideInternal: pyodideApi.internal, pyflareHost: channel.pythonApi };
  const dedicated = new SnapshotFile(standby ? null : init.snapshot_path, known, log);
  const baseline = new SnapshotFile(init.baseline_snapshot_path, known, log);
  const packages = new SnapshotFile(init.packages_snapshot_path, known, log);

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
    // No standard input, as on Cloudflare (the host's own is pyflare's
    // connection for blocking calls).
    stdin: () => null,
    stdout: (line) => log("info", line),
    stderr: (line) => log("warn", line),
  };
  // Native extension modules loaded before Python started, the function
  // table's length after them, and whether pyflare named them (a second
  // snapshot maker) rather than a restored snapshot: for the snapshots
  // this host takes.
  const preload = { names: [], table: 0, told: false };
  const restore = async (file, makeMore) => {
    const read = file.read();
    if (!read) return null;
    const { memory: bytes, record } = read;
    const undoGrowth = growMemoryOnInstantiate(bytes.length);
    try {
      const dylibs = record.dylibs ?? [];
      const preloading = dylibs.length > 0 ? await preloadingOptions(init.pyodide_dir, dylibs, record.table) : null;
      const py = await pyodideModule.loadPyodide({
        ...options,
        ...preloading?.options,
        _loadSnapshot: bytes,
        _snapshotDeserializer: (description) => file.deserialize(description),
        _makeSnapshot: makeMore,
      });
      if (preloading) {
        restoreHandles(py._module, record);
        Object.assign(preload, { names: dylibs, table: record.table });
      }
      return py;
    } catch (error) {
      // The file's checksum was right, so this worker cannot be restored
      // from a snapshot; remember that instead of rebuilding every time.
      // A bug to report: the file was sound, yet Pyodide could not use it.
      log(
        "warn",
        `[pyflare] the snapshot ${file.path} could not be restored (${error.message}); ` +
          `this code starts without it until pyflare or its runtime changes (delete ${file.path}.nosnap to retry now; ` +
          `please report this with RUST_LOG=pyflare=debug output)`,
      );
      file.discard();
      file.refuse(`restore failed: ${error.message}`);
      return null;
    } finally {
      // Pyodide has copied the snapshot into its memory by now, but keeps
      // its options. Detaching the file's buffer frees its ~30 MB at once
      // instead of at the next full garbage collection, which an idle host
      // may not run for long.
      bytes.buffer.transfer(0);
      undoGrowth();
    }
  };

  // A standby host takes no snapshot: snapshot-taking mode runs slower, and
  // it should serve the reloaded code at full speed.
  // Only a snapshot-making host takes snapshots: Pyodide runs slower while
  // it can (it tracks every JS global access), so serving hosts never do.
  const takes = Boolean(init.take_snapshots) && !standby;
  const mayTakeDedicated = takes && dedicated.wanted();
  // Only a host told which modules to import makes the packages snapshot.
  const packageList = init.packages ?? [];
  const mayTakePackages = takes && packageList.length > 0 && packages.wanted();
  let origin = "restored";
  let makeMode = false;
  let baselineTaken = null;
  // A maker told to load native modules first starts afresh: no snapshot
  // made without them can be restored under them.
  const toPreload = takes ? (init.dylibs ?? []) : [];
  let py = null;
  if (toPreload.length === 0) {
    py = await restore(dedicated, false);
    if (!py && !mayTakePackages) {
      origin = "packages";
      makeMode = mayTakeDedicated;
      py = await restore(packages, makeMode);
    }
    if (!py) {
      origin = "baseline";
      makeMode = mayTakeDedicated || mayTakePackages;
      py = await restore(baseline, makeMode);
    }
  }
  // The baseline holds no native module: one made here would not be it.
  const takesBaseline = takes && toPreload.length === 0 && baseline.wanted();
  if (!py) {
    origin = "fresh";
    makeMode = takesBaseline || mayTakeDedicated || mayTakePackages;
    const preloading = toPreload.length > 0 ? await preloadingOptions(init.pyodide_dir, toPreload) : null;
    py = await pyodideModule.loadPyodide({ ...options, ...preloading?.options, _makeSnapshot: makeMode });
    if (preloading) {
      Object.assign(preload, { names: toPreload, table: preloading.loaded().table, told: true });
    }
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
    if (takesBaseline) baselineTaken = await baseline.take(py);
  }
  // After the SDK's imports (the baseline snapshot records Pyodide's own
  // API objects it holds), before any of the worker's code.
  pyodideApi.attach(py);

  let packagesTaken = null;
  if (mayTakePackages && (origin === "baseline" || origin === "fresh")) {
    // As the worker's import would (the SDK's patches apply), before it.
    py.pyimport("_pyflare.bootstrap").preimport(packageList);
    packagesTaken = await packages.take(py, preload);
  }

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
        entrypoints.before_first_request();
        return new Worker(py, entrypoints, entrypoints.describe(), env, background, origin);
      }
      const legacyAllowed = !flags.python_no_global_handlers;
      const info = await entrypoints.load.callPromising(init.main_module, legacyAllowed);
      const taken = await new SnapshotFile(takes ? snapshotPath : null, known, log).take(py, preload);
      if (takes) {
        // What a packages snapshot of this worker should hold, and the
        // native modules a second maker should load before start.
        const imported = init.packages_snapshot_path
          ? py.pyimport("_pyflare.bootstrap").worker_packages().toJs()
          : [];
        const dylibs = sessionDylibs(py._module);
        // Tell pyflare the snapshots are on disk; it then stops this host.
        Promise.all([taken?.written, baselineTaken?.written, packagesTaken?.written]).then(() =>
          setTimeout(() => channel.send({ type: "snapshot_done", packages: imported, dylibs }), 0),
        );
      }
      entrypoints.before_first_request();
      return new Worker(py, entrypoints, info, env, background, standby ? "standby" : origin);
    },
  };
}

/**
 * Makes the next Pyodide instance's memory at least `bytes` long as soon as
 * it is instantiated, before the snapshot is copied into it; returns the
 * function that undoes the wrapping.
 *
 * Pyodide's wasm exports its own memory, so the `INITIAL_MEMORY` that its
 * `loadPyodide` sets from the snapshot's length has no effect: a snapshot
 * taken after imports that grew the memory past a fresh instance's (a
 * package-heavy worker's, such as Django's) would not fit, and its restore
 * fail with "offset is out of bounds".
 */
function growMemoryOnInstantiate(bytes) {
  const { instantiate, instantiateStreaming } = WebAssembly;
  const grow = (result) => {
    const memory = (result.instance ?? result).exports?.memory;
    if (memory instanceof WebAssembly.Memory) {
      const missing = Math.ceil((bytes - memory.buffer.byteLength) / 65536);
      if (missing > 0) memory.grow(missing);
    }
    return result;
  };
  WebAssembly.instantiate = async (...args) => grow(await instantiate.apply(WebAssembly, args));
  WebAssembly.instantiateStreaming = async (...args) =>
    grow(await instantiateStreaming.apply(WebAssembly, args));
  return () => {
    WebAssembly.instantiate = instantiate;
    WebAssembly.instantiateStreaming = instantiateStreaming;
  };
}
