"""Synchronous binding calls from Python into pyflare.

Cloudflare's Python API has synchronous storage calls (a Durable Object's
`ctx.storage.sql.exec(...)` and `ctx.storage.kv.get(...)`), while every
binding call in pyflare is a message to pyflare's Rust side, answered
asynchronously. `call` bridges the two with JavaScript Promise Integration
(JSPI): `pyodide.ffi.run_sync` suspends the WebAssembly stack of the Python
code until the call's promise settles, while Node's event loop (and with it
other requests) keeps running; the Python caller sees a plain function call.

Limits:
- Only inside a handler (fetch, scheduled, ...): pyflare runs handlers
  through `callPromising`, which gives JSPI a stack it can suspend. At import
  time (where Cloudflare's runtime allows no I/O) and from code JavaScript
  calls back synchronously (a stream's `pull`, an event listener), `call`
  raises `SyncCallError` instead of blocking.
- Not emulated: on Cloudflare a Durable Object's synchronous storage call
  holds the isolate; here other requests interleave during the call, as at
  an `await` (the call itself still returns only once pyflare answered).
  Code that relies on nothing else running during a synchronous call must
  not share state with concurrent requests.

The alternative, a worker thread blocking on `Atomics.wait` over a
SharedArrayBuffer, would block the whole isolate and needs Node's
`--allow-worker`, which the host's sandbox refuses.
"""

from js import Object
from pyodide.ffi import can_run_sync, jsnull, run_sync, to_js

NOT_IN_A_HANDLER = (
    "pyflare: a synchronous binding call works only inside a handler "
    "(fetch, scheduled, ...), not at import time or in a callback JavaScript "
    "calls synchronously"
)


class SyncCallError(RuntimeError):
    """A synchronous call was made where it cannot block."""


def call(binding, method, args=None, body=None):
    """Calls `method` of binding `binding` in pyflare and waits for it.

    `args` is a JSON-like dict, `body` bytes or None. Returns `(value, body)`:
    the reply's JSON value as Python objects, and its body as bytes or None.
    Errors from the binding are raised as the JavaScript error the worker
    would see (`JsException`), with Cloudflare's message.
    """
    import _pyflare_host

    return call_with(lambda *a: _pyflare_host.call(binding, *a), method, args, body)


def call_with(js_call, method, args=None, body=None):
    """Like `call`, through `js_call(method, args, body)`, a JavaScript
    function that returns the call's promise (a binding's shim hands one to
    the Python objects it makes, to run the call its own way: behind a
    Durable Object's input gate, say)."""
    import _pyflare_host

    if not _pyflare_host.serving() or not can_run_sync():
        raise SyncCallError(NOT_IN_A_HANDLER)
    js_args = to_js(args or {}, dict_converter=Object.fromEntries)
    js_body = None if body is None else to_js(bytes(body))
    reply = run_sync(js_call(method, js_args, js_body))
    return _py(reply.value), _bytes(reply.body)


def _py(value):
    if value is None or value is jsnull:
        return None
    return value.to_py() if hasattr(value, "to_py") else value


def _bytes(body):
    return None if body is None or body is jsnull else body.to_bytes()
