"""Parsed candle files kept between runs, so a backtest run again on the same CSV files skips the
parse (text to numbers is most of loading: 6 of 30 s for a year of 50 symbols).

One entry per source file, named by a hash of its resolved path, in ``$XDG_CACHE_HOME/mraster/
candles`` (``~/.cache/…`` by default; ``MRASTER_CANDLE_CACHE=off`` turns it off). An entry holds the
numbers exactly as parsed (raw float64/int64, so replays stay bit for bit the same) and the
file's size, modification and change times and inode: a file that was edited, appended to by
``mraster.data`` or replaced is parsed again and its entry rewritten, also when the copy that
replaced it kept the old one's size and modification time (``cp -p``, ``rsync -t``): the change
time cannot be set back. Entries are written to a temporary file and
renamed, so a reader never sees half an entry; one that cannot be read is a miss, not an error —
the cache only saves time, the CSV file stays the truth.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 2  # the entry's layout and key; a new one ignores old entries
Candles = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def folder() -> Path | None:
    """Where entries live, or None when caching is off."""
    if os.environ.get("MRASTER_CANDLE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mraster" / "candles"


@dataclass(frozen=True)
class Entry:
    """A source file's entry and the key its content must carry: taken before the file is
    parsed, so a file changed during the parse is parsed again next time."""
    file: Path
    key: np.ndarray


def entry(path: Path) -> Entry | None:
    """The entry for ``path`` as it is now; None when caching is off or the file is unreadable."""
    where = folder()
    if where is None:
        return None
    try:
        real = Path(path).resolve()
        st = real.stat()
    except OSError:
        return None
    name = hashlib.sha256(str(real).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return Entry(where / f"{name}.npz",
                 np.array([VERSION, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino],
                          dtype=np.int64))


def fresh(e: Entry) -> bool:
    """Whether the file has an entry made from it as it is now (its key alone is read)."""
    try:
        with np.load(e.file, allow_pickle=False) as z:
            return bool(np.array_equal(z["key"], e.key))
    except Exception:  # (as ``load``: a miss)
        return False


def load(e: Entry) -> Candles | None:
    """The numbers parsed from the file when it has not changed since, else None."""
    try:
        with np.load(e.file, allow_pickle=False) as z:
            if not np.array_equal(z["key"], e.key):
                return None
            t, ohlcv = z["t"], z["ohlcv"]
    except Exception:  # missing, or unreadable (a disk that filled up, a foreign file): a miss
        return None
    if t.dtype != np.int64 or ohlcv.dtype != np.float64 or ohlcv.shape != (5, len(t)):
        return None
    return (t, *ohlcv)  # views of one block: five rows, no copies


def store(e: Entry, candles: Candles) -> None:
    """Keep what was parsed; a cache that cannot be written is simply not used."""
    t, *rest = candles
    tmp = None
    try:
        e.file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=e.file.parent, prefix=".part-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=e.key, t=np.asarray(t, dtype=np.int64),
                     ohlcv=np.asarray(np.stack(rest), dtype=np.float64))
        os.replace(tmp, e.file)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
