// What Cloudflare's Python SDK costs per D1 query, without pyflare: the
// same `prepare().bind().first()` from Python, through the SDK's binding
// wrappers and straight on the JS objects, against pyflare's D1 shim with a
// backend that answers at once. Prints microseconds per query.
//
//   node bench/sdk_cost.mjs <pyodide-dir> <sdk-dir>

import { loadPyodideWithSdk } from "./pyodide_sdk.mjs";
import { readFileSync } from "node:fs";

const [pyodideDir, sdkDir] = process.argv.slice(2);
const shim = readFileSync(new URL("../bindings/src/d1/shim.mjs", import.meta.url), "utf8");
const { create } = await import(`data:text/javascript;base64,${Buffer.from(shim).toString("base64")}`);
const py = await loadPyodideWithSdk(pyodideDir, sdkDir);
const row = { value: { id: 1, name: "item 1" }, body: null };
const env = { DB: create("DB", async () => row) };
py.runPython(`
from workers import _EnvWrapper

async def through_sdk(env, n):
    wrapped = _EnvWrapper(env)
    for i in range(n):
        await wrapped.DB.prepare("SELECT name FROM items WHERE id = ?").bind(i).first()

async def raw_js(env, n):
    for i in range(n):
        await env.DB.prepare("SELECT name FROM items WHERE id = ?").bind(i).first()
`);
const N = 5000;
for (const name of ["through_sdk", "raw_js"]) {
  const run = py.globals.get(name);
  await run.callPromising(env, 500);
  const started = performance.now();
  await run.callPromising(env, N);
  console.log(`${name}: ${(((performance.now() - started) / N) * 1000).toFixed(1)} us per query`);
}
