// Native extension modules (`.so` files from the worker's folders, such as
// pydantic-core's) in memory snapshots.
//
// A snapshot holds Pyodide's linear memory and its JavaScript-side state,
// not the native modules Python loaded with `dlopen`: each is a WebAssembly
// instance of its own, with its data in the linear memory and its functions
// in the shared function table, at places that depend on everything loaded
// before it. Loaded before Python starts (as the libraries a program is
// linked with are), a list of modules takes the same places every time it
// is loaded in the same order, before the same Pyodide. So a maker loads the
// worker's native modules then, and a restore loads the same list at the
// same point before copying the snapshot's memory in; Python's later
// `dlopen` of one finds it loaded.

import { pathToFileURL } from "node:url";
import { join } from "node:path";

const SESSION = "/session/";

/** Native modules under `/session/` that `module` has loaded, in load order. */
export function sessionDylibs(module) {
  return Object.keys(module.LDSO.loadedLibsByName).filter((name) => name.startsWith(SESSION));
}

/**
 * Options for `loadPyodide` that load `names` (paths as Python names them)
 * before Python starts. `expectedTable`, when given, is the function table's
 * length the maker saw after loading them; a different length means they
 * landed elsewhere, and the load fails rather than restore memory that
 * points at the wrong functions.
 *
 * Returns `{ options, loaded }`: `loaded()` gives Pyodide's module and the
 * table's length after the preload, once `loadPyodide` has run.
 */
export async function preloadingOptions(pyodideDir, names, expectedTable) {
  const factory = (await import(pathToFileURL(join(pyodideDir, "pyodide.asm.mjs")).href)).default;
  let module = null;
  let table = 0;
  const preload = (Module) => {
    module = Module;
    for (const name of names) {
      // A library another one needs was loaded with it, before it.
      if (Module.LDSO.loadedLibsByName[name]) continue;
      const wasm = new WebAssembly.Module(Module.FS.readFile(name));
      reserveMemory(Module, Module.getDylinkMetadata(wasm));
      // As Emscripten registers a library loaded at start: never unloaded,
      // and its symbols kept local, as Python's dlopen asks.
      const dso = Module.newDSO(name, undefined, "loading");
      dso.global = false;
      dso.exports = Module.loadWebAssemblyModule(wasm, { allowUndefined: true }, name);
    }
    // As Emscripten does after the libraries a program is linked with:
    // symbols none of them defines are looked up once all are loaded.
    Module.reportUndefinedSymbols();
    table = Module.wasmTable.length;
    if (expectedTable !== undefined && table !== expectedTable) {
      throw new Error(
        `native extension modules loaded at other addresses (function table ${table}, snapshot made with ${expectedTable})`,
      );
    }
  };
  const createPyodideModule = (settings) => {
    // After Pyodide's own steps, which mount the folders the modules are read from.
    settings.preRun = [...[].concat(settings.preRun ?? []), preload];
    return factory(settings);
  };
  return { options: { createPyodideModule }, loaded: () => ({ module, table }) };
}

/**
 * Grows the memory so that a library's data fits past the heap's current
 * end: before Python starts, Emscripten places it there without growing
 * the memory itself. Growing moves nothing, so the places stay the same.
 */
function reserveMemory(Module, metadata) {
  const heapEnd = Module.HEAPU32[Module._emscripten_get_sbrk_ptr() >>> 2];
  const needed = heapEnd + (metadata.memorySize ?? 0) + 2 ** (metadata.memoryAlign ?? 0) + 16;
  if (needed > Module.HEAP8.length && !Module.growMemory(needed)) {
    throw new Error(`no memory for the native extension modules (${needed} bytes)`);
  }
}

/**
 * What a snapshot must record to be restored with its native modules: the
 * list loaded before start, the table's length after it, and the `dlopen`
 * handles Python holds (C pointers, restored with the memory, that the
 * JavaScript side must map to the modules again).
 */
export function dylibRecord(module, preloaded, table) {
  const handles = [];
  for (const [handle, dso] of Object.entries(module.LDSO.loadedLibsByHandle)) {
    if (dso?.name?.startsWith(SESSION)) handles.push([Number(handle), dso.name]);
  }
  return { dylibs: preloaded, table, handles };
}

/** Maps the `dlopen` handles `record` lists to the modules loaded again. */
export function restoreHandles(module, record) {
  for (const [handle, name] of record.handles ?? []) {
    const dso = module.LDSO.loadedLibsByName[name];
    if (dso) module.LDSO.loadedLibsByHandle[handle] = dso;
  }
}
