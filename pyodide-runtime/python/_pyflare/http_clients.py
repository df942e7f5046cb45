"""Python HTTP clients over the worker's ``fetch``, as on Cloudflare.

On Cloudflare, ``requests`` and ``urllib3`` use urllib3's Emscripten
backend (``fetch`` through JSPI), which works in pyflare unchanged, and
``httpx`` reaches the network through workerd's sockets. pyflare has no
sockets for the worker (its sandbox), so ``httpx``'s transports send their
requests through the worker's ``fetch`` instead: ``httpx.Client`` waits for
it with JSPI, as a synchronous binding call does, ``httpx.AsyncClient``
awaits it. Either way the request is the worker's subrequest (with its
``CF-Worker`` header), as one made with ``fetch`` is.

Not emulated: streamed bodies (a response is read whole before ``httpx``
sees it) and ``httpx``'s timeouts (``fetch`` has none of its own).
"""

from contextlib import contextmanager

from _cloudflare.import_patch_manager import register_runtime_exec_patch

# Headers fetch sets itself, or that describe a body it has already decoded.
_REQUEST_HEADERS_FETCH_OWNS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}
_RESPONSE_HEADERS_OF_THE_WIRE = {"content-encoding", "content-length", "transfer-encoding"}


def _fetch_init(request, body):
    import js
    from pyodide.ffi import to_js

    headers = js.Headers.new()
    for name, value in request.headers.multi_items():
        if name.lower() not in _REQUEST_HEADERS_FETCH_OWNS:
            headers.append(name, value)
    init = {"method": request.method, "headers": headers, "redirect": "manual"}
    if body:
        init["body"] = to_js(body)
    return to_js(init, dict_converter=js.Object.fromEntries)


def _response(httpx, request, fetched, body):
    headers = [
        (name, value)
        for name, value in fetched.headers.entries()
        if name.lower() not in _RESPONSE_HEADERS_OF_THE_WIRE
    ]
    return httpx.Response(
        status_code=fetched.status,
        headers=headers,
        content=body,
        request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": fetched.statusText.encode()},
    )


def _connect_error(httpx, request, error):
    return httpx.ConnectError(f"fetch failed: {error}", request=request)


@register_runtime_exec_patch("httpx._transports.default")
@contextmanager
def httpx_transports(module):
    """``HTTPTransport`` and ``AsyncHTTPTransport`` over ``fetch``."""
    yield
    import httpx

    def handle_request(self, request):
        import js
        from pyodide.ffi import JsException, run_sync

        body = request.read()
        try:
            fetched = run_sync(js.fetch(str(request.url), _fetch_init(request, body)))
            content = run_sync(fetched.arrayBuffer()).to_bytes()
        except JsException as error:
            raise _connect_error(httpx, request, error) from None
        return _response(httpx, request, fetched, content)

    async def handle_async_request(self, request):
        import js
        from pyodide.ffi import JsException

        body = await request.aread()
        try:
            fetched = await js.fetch(str(request.url), _fetch_init(request, body))
            content = (await fetched.arrayBuffer()).to_bytes()
        except JsException as error:
            raise _connect_error(httpx, request, error) from None
        return _response(httpx, request, fetched, content)

    module.HTTPTransport.handle_request = handle_request
    module.AsyncHTTPTransport.handle_async_request = handle_async_request
