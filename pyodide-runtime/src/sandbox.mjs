// What the worker's Python can reach of Pyodide itself: the folders
// mounted into its file system are read-only, as workerd's bundle is, and
// `pyodide_js` is Pyodide's public API without the parts that lead to the
// host (the Emscripten module and its file systems, Node mounts and
// sockets, package loading).

import fs from "node:fs";
import os from "node:os";

/**
 * Pyodide's Node file system asks `process.binding("constants")` for the
 * open flags, which Node's permission model forbids; answer that one
 * question from the public modules and pass every other through (to be
 * refused). Called once, before Pyodide loads.
 */
export function allowFsConstantsLookup() {
  const binding = process.binding;
  const constants = Object.freeze({ fs: fs.constants, os: os.constants });
  process.binding = function (name) {
    if (name === "constants") return constants;
    return binding.call(process, name);
  };
}

// Emscripten's error numbers (WASI's), as Python reports them.
const EPERM = 63;
const O_ACCMODE = 3;

/**
 * Mounts `hostPath` at `mountPoint`, read-only. Like workerd's read-only
 * bundle file system, the nodes have no operation that changes anything:
 * creating, removing, renaming or truncating fails with EPERM
 * ("Operation not permitted"), and a file opened for writing is opened
 * read-only, so its first write fails. The host folder is fixed when the
 * mount is made; nothing reachable from the mount names another.
 */
export function mountReadOnly(FS, hostPath, mountPoint) {
  const NODEFS = FS.filesystems.NODEFS;
  const base = NODEFS.node_ops;
  const stream = NODEFS.stream_ops;
  const adopt = (node) => {
    node.node_ops = nodeOps;
    node.stream_ops = streamOps;
    return node;
  };
  const nodeOps = Object.freeze({
    getattr: base.getattr,
    readdir: base.readdir,
    readlink: base.readlink,
    lookup: (parent, name) => adopt(base.lookup(parent, name)),
  });
  const streamOps = Object.freeze({
    open(file) {
      if ((file.flags & O_ACCMODE) !== 0) {
        // Opened for writing: the host file is opened read-only.
        const flags = file.flags;
        file.flags = flags & ~O_ACCMODE & ~(64 | 512 | 1024);
        try {
          stream.open(file);
        } finally {
          file.flags = flags;
        }
        return;
      }
      stream.open(file);
    },
    close: stream.close,
    read: stream.read,
    llseek: stream.llseek,
    mmap: stream.mmap,
  });
  const type = Object.freeze({ mount: (mount) => adopt(NODEFS.mount(mount)) });
  FS.mkdirTree(mountPoint);
  FS.mount(type, Object.freeze({ root: hostPath }), mountPoint);
}

/** The members of Pyodide's API the worker's `pyodide_js` keeps. */
const PUBLIC_API = [
  "ERRNO_CODES",
  "PATH",
  "checkInterrupt",
  "ffi",
  "globals",
  "loadedPackages",
  "lockfile",
  "lockfileBaseUrl",
  "pyimport",
  "pyodide_py",
  "runPython",
  "runPythonAsync",
  "setDebug",
  "toPy",
  "version",
];

/**
 * The worker's `pyodide_js` (and `pyodide_js._api`, which Pyodide's own
 * event loop and HTTP client read `scheduleCallback`, `abortSignalAny` and
 * `config` from): Pyodide's public API only. The module object exists
 * before Pyodide does, so a memory snapshot can record it by name, and
 * forwards to the instance given to `attach`.
 */
// Captured before any worker code runs: the worker can replace
// `Function.prototype.bind` (the prototypes are shared), and a host method
// looked up at call time would hand it what it binds.
const apply = Reflect.apply;
const bind = Function.prototype.bind;

export function makeRestrictedApi() {
  let py = null;
  const forward = (target, names, from) => {
    for (const name of names) {
      Object.defineProperty(target, name, {
        enumerable: true,
        get() {
          const value = from()[name];
          return typeof value === "function" ? apply(bind, value, [from()]) : value;
        },
      });
    }
    return target;
  };
  const internal = forward({}, ["scheduleCallback", "abortSignalAny"], () => py._api);
  Object.defineProperty(internal, "config", {
    enumerable: true,
    get: () => Object.freeze({ enableRunUntilComplete: Boolean(py._api.config?.enableRunUntilComplete) }),
  });
  const disabled = async () => {
    throw new Error("pyodide.loadPackage is disabled in Python Workers; add the package to pyproject.toml");
  };
  // Not frozen: Python's import system records submodules on their parent.
  const module = forward({ _api: internal, loadPackage: disabled, loadPackagesFromImports: disabled }, PUBLIC_API, () => py);
  return {
    module,
    internal,
    /** Binds the module to `instance` and makes `import pyodide_js` find it. */
    attach(instance) {
      py = instance;
      py.registerJsModule("pyodide_js", module);
      py.runPython(
        "import sys; [sys.modules.pop(n) for n in list(sys.modules) if n == 'pyodide_js' or n.startswith('pyodide_js.')]",
      );
    },
  };
}
