"""Crash-safe, cross-process JSON documents (state, config, bracket queue).

The old system let the dashboard and the bot write one JSON file with plain ``open("w")``; a torn
read returned ``{}`` and the next write wiped the user's positions. Here every write goes to a temp
file in the same folder, is fsynced and renamed over the target (then the folder is fsynced), and
every read-modify-write holds a file lock shared by all processes. A file that cannot be parsed is
moved aside, never overwritten.
"""
from __future__ import annotations

import copy
import glob
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("mraster.store")

Migration = Callable[[dict[str, Any]], dict[str, Any]]
CORRUPT = ".corrupt-"  # a file that could not be parsed is moved to <name>.corrupt-<UTC time>


def set_aside(path: str | Path) -> list[Path]:
    """The unreadable versions of ``path`` moved aside so far, oldest first (the dashboard shows
    each as a notice until the user dismisses it)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.name}{CORRUPT}*")) if path.parent.is_dir() else []


STALE_TEMP_SECONDS = 3600.0  # a live writer renames its temp file within seconds


def sweep_stale_temps(path: str | Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temp files writers of ``path`` left behind when they died between writing
    and renaming (``.<name>.*.tmp`` beside it), once untouched for ``older_than`` seconds.
    Each crash at that line would otherwise leave a copy of the file for good (a year's
    backtest journal: megabytes); a live writer's temp file is fresh and stays."""
    path = Path(path)
    cutoff = time.time() - older_than
    gone = []
    try:
        found = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:  # a folder missing or not readable: nothing to sweep
        return gone
    for tmp in found:
        try:
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                gone.append(tmp)
        except OSError:  # gone meanwhile, or not ours to remove: it only costs space
            continue
    if gone:
        log.info("removed %d temp file(s) of %s left by a writer that stopped", len(gone),
                 path.name)
    return gone


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def replace_synced(tmp: Path, path: Path) -> None:
    """Sync ``tmp`` (written by another writer) to disk and rename it over ``path``."""
    fd = os.open(tmp, os.O_RDWR)  # (Windows syncs only a descriptor open for writing)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonDocument:
    """One JSON document on disk with a schema version and migrations.

    ``migrations[n]`` turns a version-``n`` document into version ``n+1``. The document is always a
    JSON object carrying ``"schema_version"``. ``shape`` checks a parsed document (see
    ``mraster.files``); one that fails is set aside like one that cannot be parsed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        version: int = 1,
        default: Callable[[], dict[str, Any]] = dict,
        migrations: dict[int, Migration] | None = None,
        lock_timeout: float = 30.0,
        shape: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.version = version
        self._default = default
        self._migrations = migrations or {}
        self._shape = shape  # raises ValueError when a parsed document has the wrong shape
        from filelock import FileLock  # (here: a backtest keeps its documents in memory)

        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)
        sweep_stale_temps(self.path)

    # -- public API -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any]:
        """The current document (defaults when missing or corrupt)."""
        with self._lock:
            return self._load()

    def peek(self) -> dict[str, Any]:
        """The current document without waiting for a writer's lock: every write replaces the
        file atomically, so a plain read sees one whole version. Anything out of the ordinary
        (missing, unparsable, an older schema, a wrong shape) goes through ``read``, which deals
        with it under the lock. For readers that must not stall (the dashboard's event loop)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and doc.get("schema_version") == self.version:
                if self._shape is not None:
                    self._shape(doc)
                return doc
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return self.read()

    def write(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self._save(doc)

    def update(self, fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Read, apply ``fn`` (which may mutate in place or return a new dict), write — atomically
        with respect to every other process using the same file."""
        with self._lock:
            doc = self._load()
            result = fn(doc)
            if result is not None:
                doc = result
            self._save(doc)
            return copy.deepcopy(doc)

    # -- internals --------------------------------------------------------------------------
    def _fresh(self) -> dict[str, Any]:
        doc = self._default()
        doc["schema_version"] = self.version
        return doc

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._fresh()
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("top level is not a JSON object")
            doc = self._migrate(doc)
            if self._shape is not None:
                self._shape(doc)
            return doc
        except (ValueError, KeyError, TypeError) as exc:
            self._quarantine(exc)
            return self._fresh()

    def _migrate(self, doc: dict[str, Any]) -> dict[str, Any]:
        ver = int(doc.get("schema_version", 1))
        if ver > self.version:
            raise ValueError(f"schema_version {ver} is newer than this program understands "
                             f"({self.version})")
        while ver < self.version:
            step = self._migrations.get(ver)
            if step is not None:
                doc = step(doc)
            ver += 1
            doc["schema_version"] = ver
        return doc

    def _quarantine(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}{CORRUPT}{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}{CORRUPT}{stamp}-{n}")
            n += 1
        os.replace(self.path, aside)
        log.error("%s could not be read (%s); it was moved to %s and defaults are used",
                  self.path, exc, aside.name)

    def _save(self, doc: dict[str, Any]) -> None:
        doc = dict(doc)
        doc["schema_version"] = self.version
        atomic_write_text(self.path, json.dumps(doc, indent=1, sort_keys=False, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):  # the domain's records choose their own persisted form
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class MemoryDocument:
    """A ``JsonDocument`` that lives in memory, for a backtest's bracket queue: nobody else reads
    it and nothing has to survive the run."""

    def __init__(self, default: Callable[[], dict[str, Any]] = dict) -> None:
        self._doc = default()

    def exists(self) -> bool:
        return True

    def read(self) -> dict[str, Any]:
        return copy.deepcopy(self._doc)

    def write(self, doc: dict[str, Any]) -> None:
        self._doc = copy.deepcopy(doc)

    def update(self, fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        doc = self.read()
        result = fn(doc)
        self._doc = doc if result is None else result
        return self.read()
