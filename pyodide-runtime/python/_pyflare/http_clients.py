"""Python HTTP clients over the worker's ``fetch``, as on Cloudflare.

On Cloudflare, ``requests`` and ``urllib3`` use urllib3's Emscripten
backend (``fetch`` through JSPI), which works in pyflare unchanged, and
``httpx`` reaches the network through workerd's sockets. pyflare has no
sockets for the worker (its sandbox), so ``httpx``'s transports send their
requests through the worker's ``fetch`` instead: ``httpx.Client`` waits for
it with JSPI, as a synchronous binding call does, ``httpx.AsyncClient``
awaits it. Either way the request is the worker's subrequest (with its
``CF-Worker`` header), as one made with ``fetch`` is.

``aiohttp`` (which has no Emscripten backend) goes through ``fetch`` too,
as workerd's patch of it makes it on Cloudflare: its ``TCPConnector`` hands
each request a connection whose transport is ``fetch`` instead of a socket. aiohttp writes
its HTTP/1.1 request on it as on a socket; once the request is whole, it is
sent with ``fetch`` and the answer is handed back to aiohttp's own parser as
an HTTP/1.1 response that closes the connection. Everything else (query
parameters, JSON and form bodies, cookies, redirects, ``raise_for_status``,
aiohttp's timeouts) is aiohttp's own, whatever its version. A request
``fetch`` cannot make raises ``aiohttp.ClientConnectorError``.

Not emulated: streamed bodies (a response is read whole before the client
sees it, a request body is sent once written whole), ``httpx``'s timeouts
(``fetch`` has none of its own), aiohttp's proxies (``proxy=`` and the
environment's proxies are not used: ``fetch`` goes straight to the URL),
TLS options (``ssl=``, fingerprints: ``fetch`` checks certificates itself)
and aiohttp's WebSockets (``ws_connect``; workerd's patch has none either).
"""

import asyncio
from contextlib import contextmanager

from _cloudflare.import_patch_manager import register_runtime_exec_patch

# Headers fetch sets itself, or that describe a body it has already decoded.
_REQUEST_HEADERS_FETCH_OWNS = {
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "expect",
}
_RESPONSE_HEADERS_OF_THE_WIRE = {"content-encoding", "content-length", "transfer-encoding"}


def _fetch_init(method, header_items, body):
    import js
    from pyodide.ffi import to_js

    headers = js.Headers.new()
    for name, value in header_items:
        if name.lower() not in _REQUEST_HEADERS_FETCH_OWNS:
            headers.append(name, value)
    init = {"method": method, "headers": headers, "redirect": "manual"}
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
            init = _fetch_init(request.method, request.headers.multi_items(), body)
            fetched = run_sync(js.fetch(str(request.url), init))
            content = run_sync(fetched.arrayBuffer()).to_bytes()
        except JsException as error:
            raise _connect_error(httpx, request, error) from None
        return _response(httpx, request, fetched, content)

    async def handle_async_request(self, request):
        import js
        from pyodide.ffi import JsException

        body = await request.aread()
        try:
            init = _fetch_init(request.method, request.headers.multi_items(), body)
            fetched = await js.fetch(str(request.url), init)
            content = (await fetched.arrayBuffer()).to_bytes()
        except JsException as error:
            raise _connect_error(httpx, request, error) from None
        return _response(httpx, request, fetched, content)

    module.HTTPTransport.handle_request = handle_request
    module.AsyncHTTPTransport.handle_async_request = handle_async_request


def _whole_request(data):
    """``(method, target, headers, body)`` once ``data`` holds a whole
    HTTP/1.1 request, else ``None``."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    request_line, *lines = bytes(data[:head_end]).decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    named = {name.lower(): value for name, value in headers}
    body_start = head_end + 4
    if "chunked" in named.get("transfer-encoding", "").lower():
        body = _dechunked(bytes(data[body_start:])) if data.endswith(b"0\r\n\r\n") else None
    else:
        body_end = body_start + int(named.get("content-length", 0))
        body = bytes(data[body_start:body_end]) if len(data) >= body_end else None
    if body is None:
        return None
    method, target, _ = request_line.split(" ", 2)
    return method, target, headers, body


def _dechunked(data):
    """The body of a whole chunked request body ``data``, else ``None``."""
    body, at = bytearray(), 0
    while (line_end := data.find(b"\r\n", at)) >= 0:
        size = int(data[at:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        at = line_end + 2 + size + 2
        if len(data) < at:
            return None
        body += data[line_end + 2 : at - 2]
    return None


class _FetchTransport(asyncio.Transport):
    """What aiohttp's connection writes to and reads from: the request it
    writes is sent with ``fetch``, the answer fed back as HTTP/1.1."""

    def __init__(self, protocol, request):
        super().__init__()
        self._protocol = protocol
        self._request = request
        self._written = bytearray()
        self._sent = self._continued = self._closed = False
        self._loop = asyncio.get_running_loop()
        self._exchanging = None  # the task, kept so that it is not collected

    def write(self, data):
        if self._sent:
            return
        self._written += data
        whole = _whole_request(self._written)
        if whole is not None:
            self._sent = True
            self._exchanging = self._loop.create_task(self._exchange(*whole))
        elif not self._continued and b"\nexpect: 100-continue\r\n" in self._head().lower():
            # aiohttp's ``expect100=True``: it sends the body once answered.
            self._continued = True
            self._protocol.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _head(self):
        end = self._written.find(b"\r\n\r\n")
        return bytes(self._written[: end + 2]) if end >= 0 else b""

    def writelines(self, chunks):
        self.write(b"".join(chunks))

    async def _exchange(self, method, target, headers, body):
        import js
        from pyodide.ffi import JsException

        if any(name.lower() == "upgrade" for name, _ in headers):
            return self._fail("fetch cannot upgrade a connection (ws_connect is not emulated)")
        url = f"{self._request.url.origin()}{target}" if target.startswith("/") else target
        try:
            fetched = await js.fetch(url, _fetch_init(method, headers, body))
            content = (await fetched.arrayBuffer()).to_bytes()
        except JsException as error:
            return self._fail(f"fetch failed: {error}")
        # A HEAD answer keeps its length; any other says how much fetch read.
        wire = _RESPONSE_HEADERS_OF_THE_WIRE | {"connection", "keep-alive"}
        if method == "HEAD":
            wire = wire - {"content-length"}
        lines = [f"HTTP/1.1 {fetched.status} {fetched.statusText}"]
        lines += [f"{name}: {value}" for name, value in fetched.headers.entries() if name.lower() not in wire]
        if method != "HEAD":
            lines.append(f"Content-Length: {len(content)}")
        lines.append("Connection: close")
        if not self._closed:
            head = "\r\n".join(lines) + "\r\n\r\n"
            self._protocol.data_received(head.encode("latin-1") + content)

    def _fail(self, reason):
        import aiohttp

        if not self._closed:
            error = aiohttp.ClientConnectorError(self._request.connection_key, OSError(None, reason))
            self._protocol.set_exception(error)

    def is_closing(self):
        return self._closed

    def close(self):
        if not self._closed:
            self._closed = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self):
        self.close()

    def get_write_buffer_size(self):
        return 0

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def is_reading(self):
        return not self._closed

    def can_write_eof(self):
        return False


@register_runtime_exec_patch("aiohttp.connector")
@contextmanager
def aiohttp_connector(module):
    """``TCPConnector``'s connections over ``fetch``."""
    yield

    async def create_connection(self, req, *args, **kwargs):
        protocol = self._factory()
        protocol.connection_made(_FetchTransport(protocol, req))
        return protocol

    module.TCPConnector._create_connection = create_connection
