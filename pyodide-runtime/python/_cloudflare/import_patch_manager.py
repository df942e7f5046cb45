"""Patches that run around the import of named modules, as workerd's import
patch manager runs them for the SDK's package patches.

- ``register_exec_patch(name)`` / ``register_create_patch(name)``: a context
  manager factory, entered with the module around its execution (or
  creation): code before its ``yield`` runs before, code after it after.
- ``register_after_snapshot(name)``: a function of the module, called after a
  snapshot restore if the module was imported.
- ``register_before_first_request(name)``: likewise, before the worker's
  first event.
- ``block_calls(module, allowlist)``: the module's other functions raise
  until the first event (they would use a seed taken before the snapshot).

The SDK's patches apply to modules imported while the worker's own code is
being imported (between ``install`` and ``uninstall``), as on Cloudflare; a
module imported later, during a request, is not patched. pyflare's own
patches that stand in for workerd's runtime (``register_runtime_exec_patch``,
e.g. HTTP clients over ``fetch``) apply whenever the module is imported.
"""

import importlib.abc
import importlib.machinery
import sys

_exec_patches = {}
_runtime_exec_patches = {}
_create_patches = {}
_importing_worker = False
_after_snapshot = {}
_before_first_request = {}
_blocked = []


def _register(table, name):
    def decorate(function):
        table.setdefault(name, []).append(function)
        return function

    return decorate


def register_exec_patch(name):
    """Runs the decorated context manager factory around ``name``'s execution."""
    return _register(_exec_patches, name)


def register_runtime_exec_patch(name):
    """Like ``register_exec_patch``, for pyflare's stand-ins for workerd's
    runtime: applied whenever ``name`` is imported."""
    return _register(_runtime_exec_patches, name)


def register_create_patch(name):
    """Runs the decorated context manager factory around ``name``'s creation."""
    return _register(_create_patches, name)


def register_after_snapshot(name):
    """Calls the decorated function with ``name`` after a snapshot restore."""
    return _register(_after_snapshot, name)


def register_before_first_request(name):
    """Calls the decorated function with ``name`` before the first event."""
    return _register(_before_first_request, name)


def block_calls(module, allowlist=()):
    """Makes ``module``'s functions (but those in ``allowlist``) raise until
    the first event."""
    originals = {}
    for attribute, value in list(vars(module).items()):
        if attribute.startswith("_") or attribute in allowlist or not callable(value):
            continue
        if isinstance(value, type):
            continue
        originals[attribute] = value
        setattr(module, attribute, _blocked_function(module.__name__, attribute))
    _blocked.append((module, originals))


def _blocked_function(module_name, attribute):
    def blocked(*args, **kwargs):
        raise RuntimeError(
            f"{module_name}.{attribute}() cannot be called while the worker's code is "
            "being imported; call it from a handler"
        )

    return blocked


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        patches = list(_create_patches.get(self._name, ())) if _importing_worker else []
        return _within(patches, spec, lambda: create(spec) if create else None)

    def exec_module(self, module):
        patches = list(_runtime_exec_patches.get(self._name, ()))
        if _importing_worker:
            patches += _exec_patches.get(self._name, ())
        _within(patches, module, lambda: self._loader.exec_module(module))

    def __getattr__(self, attribute):
        return getattr(self._loader, attribute)


def _within(factories, argument, run):
    if not factories:
        return run()
    with factories[0](argument):
        return _within(factories[1:], argument, run)


class _PatchFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        patched = fullname in _runtime_exec_patches or (
            _importing_worker and (fullname in _exec_patches or fullname in _create_patches)
        )
        if not patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


_finder = _PatchFinder()


def install():
    """Applies the SDK's patches to the modules imported from now on (the
    worker's import)."""
    global _importing_worker
    _importing_worker = True
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall():
    """Stops applying the SDK's patches (pyflare's runtime patches stay)."""
    global _importing_worker
    _importing_worker = False


def after_snapshot():
    """Runs the after-snapshot hooks of the imported modules."""
    _run(_after_snapshot)


def before_first_request():
    """Unblocks blocked functions and runs the before-first-request hooks."""
    while _blocked:
        module, originals = _blocked.pop()
        for attribute, value in originals.items():
            setattr(module, attribute, value)
    _run(_before_first_request)
    _before_first_request.clear()


def _run(table):
    for name, functions in table.items():
        module = sys.modules.get(name)
        if module is not None:
            for function in functions:
                function(module)
