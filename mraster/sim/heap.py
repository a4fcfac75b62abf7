"""Hand freed memory back to the system after a burst of big temporary arrays.

glibc serves an array that was once freed at a given size from its heap afterwards (its mmap
threshold rises with each freed big block), and a heap only shrinks from its top: after reading
fifty candle files, about 55 MB of freed parse buffers stayed in the process as holes between
the kept arrays, counted in its peak memory. ``malloc_trim`` returns the free pages inside the
heap too. Elsewhere (macOS, musl, Windows) there is no such call and nothing to do.
"""
from __future__ import annotations

import ctypes


def _trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # no such call; Windows has no CDLL(None)
        return None


_TRIM = _trim()


def release_free_memory() -> None:
    """Give the free pages of the C heap back (well under a millisecond, even on a big heap)."""
    if _TRIM is not None:
        _TRIM(0)
