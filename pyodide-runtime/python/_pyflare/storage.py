"""Synchronous storage APIs a binding's shim hands to Python: a Durable
Object's `ctx.storage.sql`, `ctx.storage.kv` and `transactionSync`.

They are synchronous in Cloudflare's API, so they are Python objects whose
calls wait with `_pyflare.sync.call_with` (JSPI), not JavaScript ones: a
JavaScript frame between the worker's Python and the wait would keep JSPI
from suspending. The shim's `call(method, args, body)` runs each call behind
the object's input gate; its `blocking(method, args, body)` runs it where
JSPI cannot suspend (a callback JavaScript calls), blocking the isolate, so
no gate is needed. `codec` turns JavaScript values into the bytes Cloudflare
stores (V8's serialization) and back.
"""

from pyodide.ffi import JsProxy

from .sync import call_with

BLOB = "$blob"


def _row_value(value):
    if isinstance(value, dict) and BLOB in value:
        return memoryview(bytes(value[BLOB]))
    return value


def _bind_value(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BLOB: list(bytes(value))}
    if isinstance(value, JsProxy) and hasattr(value, "to_bytes"):
        return {BLOB: list(value.to_bytes())}
    return value


def _raise(message):
    """Raises a JavaScript `Error`, as workerd's cursor does."""
    from js import Error

    raise Error.new(message)


def _js_dict(pairs):
    try:
        from workers.rpc import JsDict
    except ImportError:
        JsDict = dict
    return JsDict(pairs)


class _JsIterator:
    """A JavaScript iterator's surface over `__next__`: Python iteration,
    `next()` answering `{done, value}`, and `toArray()`."""

    def __iter__(self):
        return self

    def next(self):
        try:
            return {"done": False, "value": self.__next__()}
        except StopIteration:
            return {"done": True}

    def toArray(self):
        return list(self)


class SqlStorageCursor(_JsIterator):
    """What `sql.exec()` returns: the last statement's rows, read once."""

    def __init__(self, result):
        self.columnNames = list(result["columns"])
        self._rows = [[_row_value(v) for v in row] for row in result["rows"]]
        self._at = 0
        # Not emulated: workerd counts rows as it steps through them; here
        # the counts are known when exec() returns (rows returned, rows changed).
        self.rowsRead = result["rowsRead"]
        self.rowsWritten = result["rowsWritten"]

    def _take(self):
        if self._at >= len(self._rows):
            raise StopIteration
        row = self._rows[self._at]
        self._at += 1
        return row

    def __next__(self):
        return _js_dict(zip(self.columnNames, self._take()))

    def one(self):
        rest = self._rows[self._at :]
        if not rest:
            _raise("Expected exactly one result from SQL query, but got no results.")
        if len(rest) > 1:
            _raise("Expected exactly one result from SQL query, but got multiple results.")
        return next(self)

    def raw(self):
        return _RawCursor(self)


class _RawCursor(_JsIterator):
    """`cursor.raw()`: the same rows as lists, sharing the cursor's place."""

    def __init__(self, cursor):
        self._cursor = cursor
        self.columnNames = cursor.columnNames

    def __next__(self):
        return list(self._cursor._take())


class _SyncApi:
    """Calls through `call` (waited on with JSPI), or `blocking` where JSPI
    cannot suspend (see `_pyflare.sync.call_with`)."""

    def __init__(self, call, blocking=None):
        self._call = call
        self._blocking = blocking

    def _run(self, method, args, body=None):
        return call_with(self._call, method, args, body, self._blocking)


class SqlStorage(_SyncApi):
    """`ctx.storage.sql`."""

    def exec(self, query, *bindings):
        args = {"query": str(query), "bindings": [_bind_value(b) for b in bindings]}
        result, _ = self._run("sql", args)
        return SqlStorageCursor(result)

    @property
    def databaseSize(self):
        result, _ = self._run("databaseSize", {})
        return result["size"]


class SyncKvStorage(_SyncApi):
    """`ctx.storage.kv`: the key-value API, synchronous (SQLite-backed objects)."""

    def __init__(self, call, codec, blocking=None):
        super().__init__(call, blocking)
        self._codec = codec

    def _decode(self, value, body):
        from workers import python_from_rpc

        entries = []
        at = 0
        for key, length in value["entries"]:
            entries.append((key, python_from_rpc(self._codec.deserialize(body[at : at + length]))))
            at += length
        return entries

    def get(self, key):
        value, body = self._run("get", {"keys": [str(key)]})
        entries = self._decode(value, body or b"")
        return entries[0][1] if entries else None

    def put(self, key, value):
        from workers import python_to_rpc

        data = self._codec.serialize(python_to_rpc(value)).to_bytes()
        self._run("put", {"keys": [str(key)], "lengths": [len(data)]}, data)

    def delete(self, key):
        value, _ = self._run("delete", {"keys": [str(key)]})
        return value["deleted"] > 0

    def list(self, options=None, **more):
        picked = {**(options or {}), **more}
        value, body = self._run("list", {"options": picked})
        return iter(self._decode(value, body or b""))


class TransactionSync(_SyncApi):
    """`storage.transactionSync(callback)`: all of the callback's writes or
    none (it raised)."""

    def __call__(self, callback):
        unwrap = getattr(callback, "unwrap", None)
        if unwrap is not None:
            callback = unwrap()
        self._run("transaction", {"op": "begin"})
        try:
            result = callback()
        except BaseException:
            self._run("transaction", {"op": "rollback"})
            raise
        self._run("transaction", {"op": "commit"})
        return result
