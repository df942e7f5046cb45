// The ceiling for one isolate: a bare Node HTTP server that hands each
// request to the same Python handler through Cloudflare's SDK (a JS Request
// in, a `workers.Response` out) inside one Node process, with no pyflare in
// between. bench/run.sh measures it in the same run as pyflare so the ratio
// is fair.
//
//   node bench/baseline.mjs <pyodide-dir> <sdk-dir> <port>

import http from "node:http";
import { loadPyodideWithSdk } from "./pyodide_sdk.mjs";

const [pyodideDir, sdkDir, port] = process.argv.slice(2);
const py = await loadPyodideWithSdk(pyodideDir, sdkDir);
py.runPython(`
from workers import Response, WorkerEntrypoint, python_from_rpc, python_to_rpc

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("Hello from Python Worker!")

async def handle(request, ctx, env):
    worker = Default(ctx, env)
    return python_to_rpc(await worker.fetch(python_from_rpc(request)))
`);
const handle = py.globals.get("handle");
const env = {};

http
  .createServer(async (req, res) => {
    const request = new Request(`http://${req.headers.host}${req.url}`, { method: req.method });
    const response = await handle.callPromising(request, {}, env);
    const body = Buffer.from(await response.arrayBuffer());
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(body);
  })
  .listen(Number(port), "127.0.0.1", () => console.log(`Ready on http://127.0.0.1:${port}`));
