"""Hand freed memory back to the system after a burst of big temporary arrays, and keep it
while the same temporaries come back again and again.

glibc serves an array that was once freed at a given size from its heap afterwards (its mmap
threshold rises with each freed big block), and a heap only shrinks from its top: after reading
fifty candle files, about 55 MB of freed parse buffers stayed in the process as holes between
the kept arrays, counted in its peak memory. ``malloc_trim`` returns the free pages inside the
heap too.

The other way round while a replay runs: its screen makes and frees the same few sizes of
temporaries (windows × moves: a few hundred KB to a few MB) thousands of times. Each trim, and
each array big enough to be mapped on its own, hands back pages that the next block faults in
again, zeroed: 570,000 page faults and 1.3-1.7 s of system time in a year of 50 symbols, against
90,000 (about the candles themselves) when freed memory is kept for reuse, for a few MB more
peak (359-360 MB against 352).

Elsewhere (macOS, musl, Windows) there are no such calls and nothing to do.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Any, Iterator


def _libc(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError, TypeError):  # no such call; Windows has no CDLL(None)
        return None


_TRIM, _MALLOPT = _libc("malloc_trim"), _libc("mallopt")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MAPPED_FROM = 4 << 20  # arrays from this size get pages of their own, handed back when freed
KEEP_WHILE_REPLAYING = 256 << 20  # free memory at the heap's top kept for reuse meanwhile
_lock = threading.Lock()
_replays = 0  # replays running in this process (the dashboard runs them in threads)


def release_free_memory() -> None:
    """Give the free pages of the C heap back (well under a millisecond, even on a big heap)."""
    if _TRIM is not None:
        _TRIM(0)


@contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """While the block runs, freed memory stays in the heap for the next temporaries of the
    same size. Afterwards, once no other replay runs, the heap keeps at most twice
    ``MAPPED_FROM`` free at its top and hands the rest back; arrays from ``MAPPED_FROM`` on stay
    mapped on their own (both where glibc's own adjustment would have ended up)."""
    global _replays
    with _lock:
        _replays += 1
        if _MALLOPT is not None:
            _MALLOPT(M_MMAP_THRESHOLD, MAPPED_FROM)
            _MALLOPT(M_TRIM_THRESHOLD, KEEP_WHILE_REPLAYING)
    try:
        yield
    finally:
        with _lock:
            _replays -= 1
            last = not _replays
            if last and _MALLOPT is not None:
                _MALLOPT(M_TRIM_THRESHOLD, 2 * MAPPED_FROM)
        if last:
            release_free_memory()
