// Pyodide with Cloudflare's Python SDK importable and the two runtime
// modules the SDK imports stubbed: the common set-up of the benchmarks that
// run Python without pyflare (ceiling.mjs, sdk_cost.mjs).

import { pathToFileURL } from "node:url";
import { join } from "node:path";

export async function loadPyodideWithSdk(pyodideDir, sdkDir) {
  const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
  const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
  py.FS.mkdirTree("/session/sdk");
  py.FS.mount(py.FS.filesystems.NODEFS, { root: sdkDir }, "/session/sdk");
  py.registerJsModule("_pyodide_entrypoint_helper", { patchWaitUntil() {} });
  py.registerJsModule("_cloudflare_compat_flags", { python_workflows_implicit_dependencies: false });
  py.runPython('import sys; sys.path.append("/session/sdk")');
  return py;
}
