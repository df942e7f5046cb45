"""Finds a worker's handlers and calls them, as workerd's introspection does.

The main module is imported, its public names are scanned for subclasses of
the SDK's `WorkerEntrypoint`, `DurableObject` and `WorkflowEntrypoint`
(the very classes `workers` exports), and a `WorkerEntrypoint` named
`Default` becomes the default export. Without `python_no_global_handlers`,
module-level `on_fetch`-style functions form the default handler instead.
"""

import importlib
import importlib.machinery
import inspect
import sys
from types import CoroutineType

from _cloudflare import import_patch_manager
from js import Object
from pyodide.code import relaxed_call
from pyodide.ffi import to_js

LEGACY_HANDLERS = ("on_fetch", "on_scheduled", "on_queue", "on_alarm", "on_trace", "on_pubsub", "test")

_classes = {}
_legacy = {}
_info = {}

# The SDK's `python_from_rpc` and `python_to_rpc`, kept by `load`: an import
# inside `call` ran importlib's `_handle_fromlist` on every event, 44 of the
# ~180 Python instructions pyflare's glue added to a request.
_from_rpc = None
_to_rpc = None


def after_restore():
    """Fresh state for a restored interpreter: new RNG seeds (workerd reseeds
    before the first request too) and no stale directory listings.

    Only the path finders' listings are dropped: `importlib.invalidate_caches()`
    would also import `importlib.metadata` (~0.13 s of a cached start).
    """
    for finder in list(sys.path_importer_cache.values()):
        if isinstance(finder, importlib.machinery.FileFinder):
            finder.invalidate_caches()
    if "random" in sys.modules:
        sys.modules["random"].seed()
    import_patch_manager.after_snapshot()


def before_first_request():
    """The SDK's package patches' last step before the worker serves."""
    import_patch_manager.before_first_request()


def describe():
    """What `load` found, after a snapshot restore."""
    return to_js(_info, dict_converter=Object.fromEntries)


def _public_methods(cls):
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(value):
                names.add(name)
    return sorted(names)


def load(main_module, legacy_allowed):
    """Imports the main module; returns what it exports."""
    try:
        module = importlib.import_module(main_module)
    except ModuleNotFoundError as error:
        if error.name == "src" or (error.name or "").startswith("src."):
            error.add_note(
                "Python Workers import sibling modules from the main module's folder: "
                "write `from models import X`, not `from src.models import X`."
            )
        raise
    finally:
        # The SDK's package patches apply to the worker's own imports only.
        import_patch_manager.uninstall()

    import workers

    global _from_rpc, _to_rpc
    _from_rpc = workers.python_from_rpc
    _to_rpc = workers.python_to_rpc

    kinds = {
        workers.WorkerEntrypoint: "worker_entrypoint",
        workers.DurableObject: "durable_object",
        workers.WorkflowEntrypoint: "workflow_entrypoint",
    }
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in dir(module) if not name.startswith("_")]

    classes = []
    for name in names:
        value = getattr(module, name, None)
        if not inspect.isclass(value) or value in kinds:
            continue
        for base, kind in kinds.items():
            if issubclass(value, base):
                _classes[name] = value
                classes.append({"name": name, "kind": kind, "methods": _public_methods(value)})
                break

    default_class = None
    default_methods = []
    if "Default" in _classes and issubclass(_classes["Default"], workers.WorkerEntrypoint):
        default_class = "Default"
        default_methods = _public_methods(_classes["Default"])

    legacy = []
    if default_class is None and legacy_allowed:
        for name in LEGACY_HANDLERS:
            value = getattr(module, name, None)
            if callable(value):
                _legacy[name] = value
                legacy.append(name)

    _info.update(
        {
            "default_class": default_class,
            "default_methods": default_methods,
            "classes": [c for c in classes if c["name"] != "Default"],
            "legacy": legacy,
        }
    )
    return describe()


def invoker(class_name, method, relaxed):
    """The function that handles one kind of event: each call constructs
    `class_name` for the event and calls `method` on it.

    `relaxed` calls (fetch, test) drop arguments the method does not take;
    strict calls pass every argument, so `scheduled` and `queue` are declared
    `(self, controller, env, ctx)` as on Cloudflare. Arguments a relaxed call
    drops are not converted.

    The host keeps one per method, so an event passes only its own values
    and runs only the steps that depend on them. A hello-world request ran
    ~100 Python instructions in a general `call(class_name, ctx, env,
    method, relaxed, *args)` and its helpers; it runs ~84 here, of ~1,420 in
    all.
    """
    cls = _classes[class_name]

    async def invoke(ctx, env, *args):
        function = getattr(cls(ctx, env), method, None)
        if function is None or not callable(function):
            raise TypeError(f"Method {method} does not exist")
        if relaxed:
            taken = _positional_count(cls, method, function)
            if taken is not None:
                args = args[:taken]
        result = function(*[_from_rpc(arg) for arg in args])
        # A coroutine, as nearly every handler returns, needs no more checks.
        if type(result) is CoroutineType or inspect.isawaitable(result):
            result = await result
        return _to_rpc(result)

    return invoke


_positional_counts = {}


def _positional_count(cls, method, bound):
    """How many positional arguments the method takes, or None for "all of
    them" (it has `*args`, or its signature cannot be read).

    `relaxed_call` works this out from the signature of the bound method on
    every call, which a new instance per event makes a cache miss each time;
    the answer depends only on the class, so it is kept per class.
    """
    key = (cls, method)
    if key not in _positional_counts:
        _positional_counts[key] = _count_positional(bound)
    return _positional_counts[key]


def _count_positional(function):
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in parameters:
        if parameter.kind == inspect.Parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


async def call_legacy(name, args):
    """Calls a module-level `on_*` handler with the raw JS arguments."""
    result = relaxed_call(_legacy[name], *args)
    if inspect.isawaitable(result):
        result = await result
    return getattr(result, "js_object", result)


# Instances that outlive one event (a Durable Object: one per id), by
# (class name, key); see pyodide-runtime/src/actors.mjs.
_instances = {}


def construct(class_name, key, state, env):
    """Builds the instance of `class_name` for `key` as workerd does,
    `Class(state, env)`, unless it is already live."""
    if (class_name, key) not in _instances:
        _instances[(class_name, key)] = _classes[class_name](state, env)


async def call_instance(class_name, key, method, mode, args):
    """Calls `method` of a live instance.

    `mode` "rpc" converts the arguments with the SDK's `python_from_rpc` and
    passes them all (an RPC call); "relaxed" converts them and drops those
    the method does not take (fetch); "raw" passes the JS values as they are,
    dropping extras (alarm, as workerd calls it). The result goes back
    through `python_to_rpc`.
    """
    instance = _instances[(class_name, key)]
    function = getattr(instance, method)
    args = list(args)
    if mode != "rpc":
        taken = _positional_count(type(instance), method, function)
        if taken is not None:
            args = args[:taken]
    result = function(*(args if mode == "raw" else [_from_rpc(arg) for arg in args]))
    if inspect.isawaitable(result):
        result = await result
    return _to_rpc(result)


def drop_instance(class_name, key):
    """Forgets an instance (evicted or reset); the next event builds a new one."""
    _instances.pop((class_name, key), None)
