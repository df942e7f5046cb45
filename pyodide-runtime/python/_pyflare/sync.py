"""Synchronous binding calls from Python into pyflare.

Cloudflare's Python API has synchronous storage calls (a Durable Object's
`ctx.storage.sql.exec(...)` and `ctx.storage.kv.get(...)`), while every
binding call in pyflare is a message to pyflare's Rust side, answered
asynchronously. `call` bridges the two with JavaScript Promise Integration
(JSPI): `pyodide.ffi.run_sync` suspends the WebAssembly stack of the Python
code until the call's promise settles, while Node's event loop (and with it
other requests) keeps running; the Python caller sees a plain function call.

Code JavaScript calls back synchronously (an event listener, a timer's
callback, a stream's `pull`) has no stack JSPI can suspend. There the call
blocks the whole isolate instead, as workerd's in-process SQLite does: the
host writes it to pyflare over a second connection and waits for the reply
with a blocking read (`callBlocking` in pyodide-runtime/src/channel.mjs).

Limits:
- Only once the worker serves: at import time Cloudflare's runtime allows
  no I/O, and `call` raises `SyncCallError`.
- Not emulated: on Cloudflare a Durable Object's synchronous storage call
  inside a handler holds the isolate; here other requests interleave during
  it, as at an `await` (the call itself still returns only once pyflare
  answered). Code that relies on nothing else running during a synchronous
  call must not share state with concurrent requests.
"""

from js import Object
from pyodide.ffi import can_run_sync, jsnull, run_sync, to_js

NOT_IN_A_HANDLER = (
    "pyflare: a synchronous binding call works only once the worker serves "
    "(in a handler, or in a callback JavaScript makes), not at import time"
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

    return call_with(
        lambda *a: _pyflare_host.call(binding, *a),
        method,
        args,
        body,
        lambda *a: _pyflare_host.callBlocking(binding, *a),
    )


def call_with(js_call, method, args=None, body=None, js_blocking=None):
    """Like `call`, through `js_call(method, args, body)`, a JavaScript
    function that returns the call's promise (a binding's shim hands one to
    the Python objects it makes, to run the call its own way: behind a
    Durable Object's input gate, say). Where JSPI cannot suspend, the call
    goes through `js_blocking(method, args, body)`, which returns the reply
    itself; without one, it raises `SyncCallError`."""
    import _pyflare_host

    if not _pyflare_host.serving():
        raise SyncCallError(NOT_IN_A_HANDLER)
    js_args = to_js(args or {}, dict_converter=Object.fromEntries)
    js_body = None if body is None else to_js(bytes(body))
    if can_run_sync():
        reply = run_sync(js_call(method, js_args, js_body))
    elif js_blocking is not None:
        reply = js_blocking(method, js_args, js_body)
    else:
        raise SyncCallError(NOT_IN_A_HANDLER)
    return _py(reply.value), _bytes(reply.body)


def _py(value):
    if value is None or value is jsnull:
        return None
    return value.to_py() if hasattr(value, "to_py") else value


def _bytes(body):
    return None if body is None or body is jsnull else body.to_bytes()
