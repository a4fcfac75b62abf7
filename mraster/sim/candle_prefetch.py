"""A first run over many large candle files shares their parsing with a second process.

Text to numbers is the one part of loading two cores can split: numpy's parser holds the GIL,
so threads gain nothing, and the parsed-candle cache (``candle_cache``) already carries the
numbers from one process to another bit for bit. So a helper process parses the last of the
files that are not cached yet into the cache while this process parses the first ones, and
this process then reads the helper's from the cache. Nothing depends on the helper: a file it
did not parse (an error in it, a helper that stopped or could not start, a cache that cannot
be written) is parsed here, and its error is named here, with its line.

Used only where it pays: two cores or more, the cache on, and at least ``MIN_BYTES`` to parse
(the helper's start, about 0.1 s, costs more than it saves on a few small files).

The helper is ``python -m mraster.sim.candle_prefetch FILE…``: it reports each file as
``ok N`` or ``no N`` (N: the file's position among its arguments) on a line of its own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from mraster.sim import candle_cache

MIN_BYTES = 48 * 2**20  # about six symbols' year of 5m candles
START_BYTES = 2 * 2**20  # what this process parses while the helper starts


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every platform)
        return os.cpu_count() or 1


def helpers_share(sizes: Sequence[int]) -> int:
    """Where the helper's files start: this process takes the first files up to half of the
    bytes and what it parses while the helper starts; the helper the rest."""
    half = (sum(sizes) + START_BYTES) / 2
    taken = 0
    for k, n in enumerate(sizes):
        if taken >= half:
            return k
        taken += n
    return len(sizes)


class ParsingAhead:
    """``wait(path)`` before reading a candle file: returns once the helper has parsed it
    into the cache, at once for a file that is not the helper's (or when there is no
    helper). Close it (``with``) to stop a helper still at work."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.theirs: dict[Path, int] = {}
        self.done: dict[int, bool] = {}
        self.proc: subprocess.Popen | None = None
        if cores() < 2 or candle_cache.folder() is None:
            return
        entries = [(f, e) for f in files if (e := candle_cache.entry(f)) is not None]
        if sum(int(e.key[1]) for _, e in entries) < MIN_BYTES:  # (key[1]: the file's size)
            return  # (before any entry is opened: most runs read a few small files)
        todo = [(f, int(e.key[1])) for f, e in entries if not candle_cache.fresh(e)]
        sizes = [n for _, n in todo]
        if sum(sizes) < MIN_BYTES:
            return
        theirs = [f for f, _ in todo[helpers_share(sizes):]]
        if not theirs:  # (one large file: nothing to share)
            return
        root = str(Path(__file__).resolve().parents[2])  # (whatever the caller's folder)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, *map(str, theirs)], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        except OSError:
            return  # (this process parses everything, as without a helper)
        self.theirs = {f: k for k, f in enumerate(theirs)}

    def wait(self, path: Path) -> None:
        k = self.theirs.get(path)
        if k is None or self.proc is None or self.proc.stdout is None:
            return
        while k not in self.done:
            line = self.proc.stdout.readline()
            if not line:  # the helper stopped: what it left is parsed here
                return
            word, _, n = line.partition(" ")
            if n.strip().isdigit():  # (nothing else is expected on its output)
                self.done[int(n)] = word == "ok"

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # (its handler lets a half-written entry be removed)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ParsingAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(paths: Sequence[str]) -> None:
    """The helper: parse each file into the cache, saying which it managed."""
    from mraster.sim.market import read_candles_csv

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # finally clauses run on the way out
    for k, path in enumerate(paths):
        try:
            read_candles_csv(Path(path))
            said = "ok"
        except Exception:  # (named by the process that asked, which parses the file again)
            said = "no"
        print(said, k, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
