"""``allow_bad_entropy_calls``: on Cloudflare, a number of calls to the
system's entropy allowed while a snapshot is being made, when it is blocked.

Not emulated: pyflare's Pyodide always has real entropy (``crypto``), and a
restored snapshot is reseeded (``_pyflare.entrypoints.after_restore``), so
there is nothing to allow.
"""

from contextlib import contextmanager


@contextmanager
def allow_bad_entropy_calls(count):
    """Allows ``count`` entropy calls inside the block (always allowed here)."""
    del count
    yield
