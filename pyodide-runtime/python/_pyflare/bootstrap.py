"""Setting up the interpreter for a worker, before and after its imports.

The host calls these from JavaScript (pyodide.mjs); they run once per
interpreter, and what they leave is part of the memory snapshots.
"""

import importlib
import site
import sys


def setup_paths(module_root, python_modules=None, pinned_sdk=None):
    """Puts the worker's folder first on ``sys.path``, then the site
    folders of ``python_modules/``, and the pinned SDK last, used only when
    the worker vendors none; the ``.pth`` files of both run as a site
    folder's do (the SDK's load its package patches, which ``_cloudflare``
    applies while the worker's code is imported)."""
    sys.path.insert(0, module_root)
    if python_modules:
        before = list(sys.path)
        site.addsitedir(python_modules)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = [p for p in sys.path if p not in added]
        sys.path[1:1] = added
    if pinned_sdk:
        site.addsitedir(pinned_sdk)
    from _cloudflare import import_patch_manager

    import _pyflare.http_clients  # noqa: F401  (registers its patches)

    import_patch_manager.install()


def warm_up():
    """Runs the import machinery and the SDK's conversions once, so that a
    standby host compiles their WebAssembly before new code arrives (V8
    compiles it lazily, on first use)."""
    import js
    from workers import Response, python_from_rpc, python_to_rpc

    importlib.invalidate_caches()
    exec(compile("def _pyflare_warm():\n    return [i for i in range(3)]", "<warm-up>", "exec"), {})
    python_to_rpc(Response("warm-up", headers={"x-warm": "1"}))
    python_from_rpc(js.Request.new("http://localhost/warm-up"))


PYTHON_MODULES = "/session/python_modules/"


def worker_packages():
    """Names of the loaded modules that come from ``python_modules/``, in
    the order they were imported: what a packages snapshot of this worker
    holds (see ``preimport``)."""
    return [name for name, file in _loaded_files() if file.startswith(PYTHON_MODULES)]


def _loaded_files():
    """``(name, file)`` of each loaded module, in import order (``""`` for
    a module without a file)."""
    modules = list(sys.modules.items())
    return [(name, str(getattr(module, "__file__", "") or "")) for name, module in modules]


def preimport(names):
    """Imports ``names`` (from ``worker_packages`` of an earlier load) for a
    packages snapshot, in their order. A module whose import needs the
    worker's own set-up first (Django's models need its settings) fails
    here and is left out: the worker's import brings it in as usual."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (any failure: left to the worker)
            sys.modules.pop(name, None)
