"""The record of what the bot saw: per cycle the quotes, the closed candles that were new since
the last line, and each symbol's decision — compact JSON lines, pruned to ``ASTER_RECORD_DAYS``.
The live-versus-replay audit (``mraster.audit``) replays it through the same evaluator. A partial
last line (a crash while writing) is skipped by the reader; nothing else depends on this file."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

from mraster.store import atomic_write_text, sweep_stale_temps
from mraster.strategy.signals import Candles

log = logging.getLogger("mraster.engine")
DAY_MS = 86_400_000


def _rows(c: Candles, after: int) -> list[list[float]]:
    return [[int(c.t[i]), float(c.o[i]), float(c.h[i]), float(c.l[i]), float(c.c[i]), float(c.v[i])]
            for i in range(len(c.t)) if int(c.t[i]) > after]


class Recorder:
    def __init__(self, path: str | Path, days: int) -> None:
        self.path, self.days = Path(path), days
        self.upto: dict[str, tuple[int, int]] = {}  # symbol → last candle written (ltf, htf)
        self._pruned_day = -1
        self.fresh = True  # the next line must carry the policy (a new file or a cut one)

    def write(self, now: int, settings_hash: str, snaps: dict[str, Any],
              candles: dict[str, tuple[Candles, Candles]], decisions: dict[str, dict],
              seen: dict[str, Any] | None = None) -> None:
        """``seen``: the evaluation's other inputs (``Engine._decision_context``)."""
        if self.days <= 0:
            return
        k = {}
        for sym, (ltf, htf) in candles.items():
            if ltf is None or htf is None or sym not in snaps:
                continue
            full = sym not in self.upto  # the whole window the engine holds, not an increment
            lt, ht = self.upto.get(sym, (-1, -1))
            k[sym] = [_rows(ltf, lt), _rows(htf, ht), int(full)]
            self.upto[sym] = (int(ltf.t[-1]) if len(ltf.t) else lt, int(htf.t[-1]) if len(htf.t) else ht)
        line = {"t": now, "s": settings_hash,
                # quotes only where the evaluator looked (the volume floor's rejects say nothing more)
                "q": {sym: [q.bid, q.ask, q.quote_volume, q.mark, q.index, q.funding]
                      for sym, q in snaps.items() if sym in candles},
                "k": k, "d": {sym: [d.get("action"), d.get("reason"), d.get("side")]
                              for sym, d in decisions.items()}, "g": seen or {}}
        if seen and "policy" in seen:
            self.fresh = False
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
            if now // DAY_MS != self._pruned_day:
                self._pruned_day = now // DAY_MS
                self.prune(now)
        except OSError as exc:
            log.warning("the audit record %s could not be written: %s", self.path, exc)

    def prune(self, now: int) -> None:
        """Keep ``days`` of lines (rewritten atomically; the first kept line of each symbol still
        carries its full candle window because windows restart after the cut)."""
        cut = now - self.days * DAY_MS
        lines = list(read(self.path))
        if not lines or lines[0]["t"] >= cut:
            return
        kept = [x for x in lines if x["t"] >= cut]
        sweep_stale_temps(self.path)  # a bot killed during an earlier cut left a copy
        atomic_write_text(self.path, "".join(json.dumps(x, separators=(",", ":")) + "\n"
                                             for x in kept))
        self.upto.clear()  # the next line writes every window in full again
        self.fresh = True  # ... and the policy


def read(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return
    with p.open(encoding="utf-8") as f:
        for raw in f:
            try:
                yield json.loads(raw)
            except ValueError:
                continue  # a line cut short by a crash
