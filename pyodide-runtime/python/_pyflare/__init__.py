"""pyflare's private glue between the Node host and the worker's Python.

Nothing here is imported by user code; the `workers` package users import is
Cloudflare's own SDK.
"""
