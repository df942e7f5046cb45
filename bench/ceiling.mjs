// The SDK-bound ceiling of a route: a bare Node HTTP server that hands each
// request to the same Python worker through Cloudflare's SDK, inside one
// Node process, with no pyflare in between. Its bindings are made by
// pyflare's own shims (so their class names are Cloudflare's and the SDK
// wraps them as it wraps pyflare's) over in-memory backends that answer at
// once: no socket, no disk. The benchmark scripts measure it in the same
// run as pyflare, so the ratio is fair.
//
//   node bench/ceiling.mjs <pyodide-dir> <sdk-dir> <port> <route>
//
// route: hello (examples/hello), kv, d1 or r2 (bench/workers/<route>).

import http from "node:http";
import { readFileSync } from "node:fs";
import { loadPyodideWithSdk } from "./pyodide_sdk.mjs";

const [pyodideDir, sdkDir, port, route = "hello"] = process.argv.slice(2);

/** The `create` export of a binding's shim. */
async function shim(kind) {
  const text = readFileSync(new URL(`../bindings/src/${kind}/shim.mjs`, import.meta.url), "utf8");
  const module = await import(`data:text/javascript;base64,${Buffer.from(text).toString("base64")}`);
  return module.create;
}

async function bytesOf(body) {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return new TextEncoder().encode(body);
  if (body instanceof ReadableStream) return new Uint8Array(await new Response(body).arrayBuffer());
  return new Uint8Array(body.buffer ?? body, body.byteOffset ?? 0, body.byteLength);
}

function unexpected(method) {
  throw new Error(`not in the benchmark: ${method}`);
}

// In-memory answers to the calls each route makes, shaped as pyflare's
// bindings answer them.
const backends = {
  hello: async () => ({}),

  async kv() {
    const values = new Map();
    const call = async (method, args, body) => {
      if (method === "put") {
        values.set(args.key, await bytesOf(body));
        return { value: null, body: null };
      }
      if (method === "get") {
        const bytes = values.get(args.key);
        return bytes === undefined ? { value: null, body: null } : { value: {}, body: bytes };
      }
      return unexpected(method);
    };
    return { KV: (await shim("kv"))("KV", call) };
  },

  async d1() {
    const names = new Map();
    const call = async (method, args) => {
      if (method === "exec") {
        for (let id = 1; id <= 1000; id++) names.set(id, `item ${id}`);
        return { value: { count: 2, duration: 0 }, body: null };
      }
      if (method === "query" && args.mode === "first") {
        const name = names.get(args.params[0]);
        return { value: name === undefined ? null : { name }, body: null };
      }
      return unexpected(method);
    };
    return { DB: (await shim("d1"))("DB", call) };
  },

  async r2() {
    const objects = new Map();
    const call = async (method, args, body) => {
      if (method === "put") {
        const bytes = await bytesOf(body);
        const object = {
          key: args.key,
          version: "0",
          size: bytes.byteLength,
          etag: "e",
          uploaded: 0,
          httpMetadata: {},
          customMetadata: {},
          checksums: {},
          storageClass: "Standard",
        };
        objects.set(args.key, { object, bytes });
        return { value: object, body: null };
      }
      if (method === "get") {
        const entry = objects.get(args.key);
        if (!entry) return { value: null, body: null };
        return { value: { object: entry.object }, body: new Blob([entry.bytes]).stream() };
      }
      return unexpected(method);
    };
    return { BUCKET: (await shim("r2"))("BUCKET", call) };
  },
};

if (!(route in backends)) throw new Error(`unknown route ${route}: hello, kv, d1 or r2`);
const env = await backends[route]();
const source = route === "hello" ? "../examples/hello/src/entry.py" : `./workers/${route}/src/entry.py`;

const py = await loadPyodideWithSdk(pyodideDir, sdkDir);
py.runPython(readFileSync(new URL(source, import.meta.url), "utf8"));
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
