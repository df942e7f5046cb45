// The SDK-bound ceiling for R2 calls: a bare Node HTTP server that runs the
// same Python worker as bench/workers/r2 through Cloudflare's SDK, with
// `env.BUCKET` made by pyflare's own R2 shim over an in-memory backend (a
// Map answering at once), so no pyflare, no socket, no disk. bench/r2.sh
// measures it in the same run as pyflare so the ratio is fair.
//
//   node bench/r2_baseline.mjs <pyodide-dir> <sdk-dir> <port>

import http from "node:http";
import { readFileSync } from "node:fs";
import { loadPyodideWithSdk } from "./pyodide_sdk.mjs";

const [pyodideDir, sdkDir, port] = process.argv.slice(2);
const shim = readFileSync(new URL("../bindings/src/r2/shim.mjs", import.meta.url), "utf8");
const { create } = await import(`data:text/javascript;base64,${Buffer.from(shim).toString("base64")}`);

const objects = new Map();
async function bytesOf(body) {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof ReadableStream) return new Uint8Array(await new Response(body).arrayBuffer());
  return new Uint8Array(body.buffer ?? body, body.byteOffset ?? 0, body.byteLength);
}
// Answers the two calls the route makes, shaped as pyflare answers them.
async function call(method, args, body) {
  if (method === "put") {
    const bytes = await bytesOf(body);
    const object = { key: args.key, version: "0", size: bytes.byteLength, etag: "e", uploaded: 0, httpMetadata: {}, customMetadata: {}, checksums: {}, storageClass: "Standard" };
    objects.set(args.key, { object, bytes });
    return { value: object, body: null };
  }
  if (method === "get") {
    const entry = objects.get(args.key);
    if (!entry) return { value: null, body: null };
    return { value: { object: entry.object }, body: new Blob([entry.bytes]).stream() };
  }
  throw new Error(`not in the benchmark: ${method}`);
}
const env = { BUCKET: create("BUCKET", call) };

const py = await loadPyodideWithSdk(pyodideDir, sdkDir);
py.runPython(readFileSync(new URL("./workers/r2/src/entry.py", import.meta.url), "utf8"));
py.runPython(`
from workers import python_from_rpc, python_to_rpc

async def handle(request, ctx, env):
    return python_to_rpc(await Default(ctx, env).fetch(python_from_rpc(request)))
`);
const handle = py.globals.get("handle");

http
  .createServer(async (req, res) => {
    const request = new Request(`http://${req.headers.host}${req.url}`, { method: req.method });
    const response = await handle.callPromising(request, {}, env);
    const body = Buffer.from(await response.arrayBuffer());
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(body);
  })
  .listen(Number(port), "127.0.0.1", () => console.log(`Ready on http://127.0.0.1:${port}`));
