"""pyflare's own version of workerd's internal ``_cloudflare`` package.

Cloudflare's Python SDK ships ``.pth`` patches (``_workers_sdk_patch_loader``)
that load only when ``_cloudflare`` can be imported, as it can on Cloudflare.
They adapt packages to the Workers runtime: ``anyio.to_thread`` runs inline
(FastAPI's sync routes, ``StaticFiles``), ``ssl`` is kept away from some
imports, random generators are reseeded around snapshots. This package gives
them the two modules they import: ``import_patch_manager`` (patches that run
around a module's import while the worker's code is imported, and hooks after
a snapshot restore and before the first request) and ``allow_entropy``.
"""
