"""Market models for the built-in exchange: replay of real candle files and a seeded generator.

Both expose the same view: base candles (5 minutes) per symbol on one clock. A candle that is still
forming at the clock's time is shown partially: the price walks open → low → high → close for an up
candle (open → high → low → close for a down candle) in three equal time segments, so a stop inside
the candle triggers at a definite moment and the current price never reveals the candle's future.
"""
from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mraster.sim import candle_cache
from mraster.sim.heap import release_free_memory

BASE_MS = 5 * 60_000
DAY_CANDLES = 86_400_000 // BASE_MS  # the 24h ticker's window
INTERVAL_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000,
               "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000}
FUNDING_MS = 8 * 3_600_000


class SimClock:
    """Exchange time in ms: real time (optionally accelerated) plus manual steps made by tests."""

    def __init__(self, start_ms: int, speed: float = 1.0, manual: bool = False) -> None:
        self.start_ms = int(start_ms)
        self.speed = speed
        self.manual = manual
        self._t0 = time.monotonic()
        self._offset = 0

    def now_ms(self) -> int:
        elapsed = 0 if self.manual else (time.monotonic() - self._t0) * 1000 * self.speed
        return int(self.start_ms + elapsed + self._offset)

    def step(self, ms: int) -> int:
        self._offset += int(ms)
        return self.now_ms()

    def set(self, t_ms: int) -> None:
        self._offset += int(t_ms) - self.now_ms()


@dataclass
class Series:
    """Base candles of one symbol (numpy arrays, ascending open time) plus its market params."""

    symbol: str
    base: str
    quote: str
    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray
    c: np.ndarray
    v: np.ndarray
    spread: float = 0.0002  # fraction of mid
    premium: np.ndarray | None = None  # mark/index premium per candle
    basis: np.ndarray | None = None    # mark/last − 1 per candle (None: mark equals last)
    funding: np.ndarray | None = None  # funding rate per candle (the rate due at the next settle)
    funding_times: np.ndarray | None = None  # explicit settlement times (replay) or None (8h grid)
    tick: float = 0.0
    step: float = 0.0
    min_notional: float = 5.0
    max_leverage: int = 50

    def __post_init__(self) -> None:
        if self.tick and self.step:
            return
        # (the same middle value as numpy's median, without the 10 ms numpy.ma import that
        # its first call costs every backtest's start)
        ref = float(statistics.median(self.c[-min(len(self.c), 500):].tolist()))
        if not self.tick:
            self.tick = 10.0 ** (math.floor(math.log10(ref)) - 4)
        if not self.step:
            self.step = min(1.0, 10.0 ** math.floor(math.log10(self.min_notional / ref)))


def _path_points(o: float, h: float, l: float, c: float) -> tuple[float, float, float, float]:
    return (o, l, h, c) if c >= o else (o, h, l, c)


def path_value(o: float, h: float, l: float, c: float, frac: float) -> float:
    pts = _path_points(o, h, l, c)
    frac = min(max(frac, 0.0), 1.0) * 3
    i = min(int(frac), 2)
    return pts[i] + (pts[i + 1] - pts[i]) * (frac - i)


def path_range(o: float, h: float, l: float, c: float, a: float, b: float) -> tuple[float, float]:
    """Lowest and highest price on the candle's path between fractions a <= b of its time."""
    vals = [path_value(o, h, l, c, a), path_value(o, h, l, c, b)]
    pts = _path_points(o, h, l, c)
    for k in (1, 2):
        if a < k / 3 < b:
            vals.append(pts[k])
    return min(vals), max(vals)


class Market:
    """A set of Series on one clock."""

    def __init__(self, series: list[Series], clock: SimClock) -> None:
        self.series = {s.symbol: s for s in series}
        self.clock = clock
        self._at: dict[str, tuple[int, int, int]] = {}  # symbol → (time, candles, index)
        self._cum: dict[str, RunningSums] = {}  # running volume sums
        # (what, symbol) → the last moment asked, and the block of moments worked out at once
        # (see _from_block)
        self._asked: dict[tuple[str, str], int] = {}
        self._blocks: dict[tuple[str, str], tuple[int, list[dict[str, float]]]] = {}

    # -- time & price ------------------------------------------------------------------------
    def symbols(self) -> list[str]:
        return list(self.series)

    def index_at(self, sym: str, t_ms: int) -> int:
        """Index of the candle containing t (the last one opened at or before t), -1 if none."""
        s = self.series[sym]
        self.ensure(sym, t_ms)
        hit = self._at.get(sym)  # one moment is asked about many times (quote, book, premium...)
        if hit is not None and hit[0] == t_ms and hit[1] == len(s.t):
            return hit[2]
        i = int(s.t.searchsorted(t_ms, side="right")) - 1
        self._at[sym] = (t_ms, len(s.t), i)
        return i

    def ensure(self, sym: str, t_ms: int) -> None:
        """Extend generated series up to t (replay series simply end)."""

    def price_at(self, sym: str, t_ms: int) -> float:
        s = self.series[sym]
        i = self.index_at(sym, t_ms)
        if i < 0:
            return float(s.o[0])
        frac = (t_ms - s.t[i]) / BASE_MS
        if frac >= 1:  # after the data ends or inside a gap: the last close stands
            return float(s.c[i])
        return path_value(s.o[i], s.h[i], s.l[i], s.c[i], frac)

    def range_between(self, sym: str, t0: int, t1: int) -> tuple[float, float]:
        """Lowest and highest traded price between two moments (for stop and limit triggers)."""
        s = self.series[sym]
        i0, i1 = self.index_at(sym, t0), self.index_at(sym, t1)
        lo, hi = math.inf, -math.inf
        for i in range(max(i0, 0), i1 + 1):
            a = max(0.0, (t0 - s.t[i]) / BASE_MS)
            b = min(1.0, (t1 - s.t[i]) / BASE_MS)
            if a > 1 or b < 0:
                continue
            x, y = path_range(s.o[i], s.h[i], s.l[i], s.c[i], a, b)
            lo, hi = min(lo, x), max(hi, y)
        p = self.price_at(sym, t1)
        return min(lo, p), max(hi, p)

    def first_reach(self, sym: str, t0: int, t1: int, level: float, falling: bool) -> float | None:
        """The price at which the path between two moments first reaches ``level``: the level
        itself when the path moves through it, a candle's open when the candle opens beyond it
        (a gap), None when it is never reached. A stop fills there, not at wherever the price
        happens to be when the clock is next looked at."""
        s = self.series[sym]
        beyond = (lambda x: x <= level) if falling else (lambda x: x >= level)
        for i in range(max(self.index_at(sym, t0), 0), self.index_at(sym, t1) + 1):
            a = max(0.0, (t0 - s.t[i]) / BASE_MS)
            b = min(1.0, (t1 - s.t[i]) / BASE_MS)
            if a > 1 or b < 0:
                continue
            pts = _path_points(s.o[i], s.h[i], s.l[i], s.c[i])
            start = path_value(s.o[i], s.h[i], s.l[i], s.c[i], a)
            if beyond(start):
                return float(start)
            inner = [pts[k] for k in (1, 2) if a < k / 3 < b]
            if any(beyond(x) for x in inner + [path_value(s.o[i], s.h[i], s.l[i], s.c[i], b)]):
                return float(level)
        p = self.price_at(sym, t1)
        return float(p) if beyond(p) else None

    def premium_at(self, sym: str, t_ms: int) -> float:
        s = self.series[sym]
        if s.premium is None:
            return 0.0
        return float(s.premium[max(self.index_at(sym, t_ms), 0)])

    def basis_at(self, sym: str, t_ms: int) -> float:
        """How far the mark price sits from the last traded price (mark = last × (1 + basis))."""
        s = self.series[sym]
        if s.basis is None or not len(s.basis):
            return 0.0
        return float(s.basis[min(max(self.index_at(sym, t_ms), 0), len(s.basis) - 1)])

    def funding_at(self, sym: str, t_ms: int) -> float:
        s = self.series[sym]
        if s.funding is None:
            return 0.0
        if s.funding_times is not None:
            j = int(np.searchsorted(s.funding_times, t_ms, side="right"))
            j = min(j, len(s.funding) - 1)
            return float(s.funding[j])
        return float(s.funding[max(self.index_at(sym, t_ms), 0)])

    def next_funding_time(self, sym: str, t_ms: int) -> int:
        s = self.series[sym]
        if s.funding_times is not None:
            j = int(np.searchsorted(s.funding_times, t_ms, side="right"))
            if j < len(s.funding_times):
                return int(s.funding_times[j])
        return (t_ms // FUNDING_MS + 1) * FUNDING_MS

    def quote(self, sym: str, t_ms: int | None = None) -> dict[str, float]:
        """Last, bid, ask, mark, index and funding at ``t_ms`` (default: now); an engine
        stepping candle after candle through a replay gets them from blocks (``_from_block``)."""
        t_ms = self.clock.now_ms() if t_ms is None else t_ms
        got = self._from_block("quote", sym, t_ms, self._quote_block)
        return got if got is not None else self._quote_one(sym, t_ms)

    def _quote_one(self, sym: str, t_ms: int) -> dict[str, float]:
        s = self.series[sym]
        last = self.price_at(sym, t_ms)
        bid, ask, mark, index = _book(s, last, self.premium_at(sym, t_ms), self.basis_at(sym, t_ms))
        return {"last": last, "bid": float(bid), "ask": float(ask), "mark": float(mark),
                "index": float(index), "funding": self.funding_at(sym, t_ms)}

    def _last_many(self, sym: str, times: np.ndarray) -> tuple[np.ndarray, ...]:
        """``price_at`` at many moments, with each moment's candle index (−1 before the data),
        that index clipped to the data, and how far into its candle the moment is."""
        s = self.series[sym]
        self.ensure(sym, int(times[-1]))
        i = s.t.searchsorted(times, side="right") - 1
        at = np.maximum(i, 0)
        frac = (times - s.t[at]) / BASE_MS
        # at a candle's open the price is its open; in a gap or after the data, the last close
        last = np.where(i < 0, s.o[0], np.where(frac >= 1, s.c[at], s.o[at]))
        for k in np.flatnonzero((i >= 0) & (frac > 0) & (frac < 1)):  # inside a candle
            last[k] = self.price_at(sym, int(times[k]))
        return last, i, at, frac

    def _day_quote_volume(self, sym: str, last, i, at, frac, k: int = 1) -> np.ndarray:
        """The 24 h quote volume (``k`` 0: the base volume) at the moments of ``_last_many``."""
        s = self.series[sym]
        cum = self._sums(sym)
        done = s.v[at] * np.clip(frac, 0.0, 1.0)  # as stats_24h: the forming candle's share
        day_ago = cum.at(k, np.maximum(0, at - (DAY_CANDLES - 1)))
        return np.where(i < 0, 0.0, cum.at(k, at) - day_ago + (done * last if k else done))

    def day_stats(self, sym: str, times: np.ndarray,
                  volume: bool = False) -> dict[str, np.ndarray]:
        """``stats_24h`` at many moments at once: open, high, low, last and quote volume (and
        the base volume when asked)."""
        s = self.series[sym]
        last, i, at, frac = self._last_many(sym, times)
        before = np.where(i < 0, 0, at)  # the day's candles before the moment's own: [j, i)
        high = np.maximum(trailing(s.h, before, DAY_CANDLES - 1, np.maximum, -np.inf), last)
        low = np.minimum(trailing(s.l, before, DAY_CANDLES - 1, np.minimum, np.inf), last)
        out = {"open": np.where(i < 0, last, s.o[np.maximum(0, at - (DAY_CANDLES - 1))]),
               "high": high, "low": low, "last": last,
               "quote_volume": self._day_quote_volume(sym, last, i, at, frac)}
        if volume:
            out["volume"] = self._day_quote_volume(sym, last, i, at, frac, k=0)
        return out

    def quotes(self, sym: str, times: np.ndarray,
               day_volume: bool = True) -> dict[str, np.ndarray]:
        """``quote`` and (unless not asked) the 24h quote volume at many moments at once (a
        backtest's steps)."""
        s = self.series[sym]
        last, i, at, frac = self._last_many(sym, times)
        prem = s.premium[at] if s.premium is not None else np.zeros(len(times))
        basis = s.basis[np.minimum(at, len(s.basis) - 1)] if s.basis is not None and len(s.basis) \
            else np.zeros(len(times))
        if s.funding is None:
            funding = np.zeros(len(times))
        elif s.funding_times is not None:
            funding = s.funding[np.minimum(s.funding_times.searchsorted(times, side="right"),
                                           len(s.funding) - 1)]
        else:
            funding = s.funding[at]
        bid, ask, mark, index = _book(s, last, prem, basis)
        out = {"last": last, "bid": bid, "ask": ask, "mark": mark, "index": index,
               "funding": funding}
        if day_volume:
            out["quote_volume"] = self._day_quote_volume(sym, last, i, at, frac)
        return out

    def _quote_block(self, sym: str, times: np.ndarray) -> dict[str, np.ndarray]:
        return self.quotes(sym, times, day_volume=False)

    # -- candles -----------------------------------------------------------------------------
    def candles(self, sym: str, interval: str, t_ms: int, limit: int = 500,
                start: int | None = None, end: int | None = None,
                price: str = "last") -> list[list]:
        """Klines in the exchange's 12-field layout up to t (the forming candle partial).
        ``price``: ``last`` (trades), or ``mark`` / ``index`` (the same moves scaled by the
        candle's mark basis or index premium, as the quotes are; no volume)."""
        iv = INTERVAL_MS[interval]
        if iv < BASE_MS:
            iv = BASE_MS  # the models hold 5m candles; finer intervals are served as 5m
        s = self.series[sym]
        hi_idx = self.index_at(sym, t_ms)
        if hi_idx < 0:
            return []
        if end is not None:
            hi_idx = min(hi_idx, int(np.searchsorted(s.t, end, side="right")) - 1)
        k = iv // BASE_MS
        need = (limit + 1) * k
        lo_idx = max(0, hi_idx - need + 1)
        if start is not None:
            lo_idx = max(lo_idx, int(np.searchsorted(s.t, start - iv + 1, side="left")))
        sl = slice(lo_idx, hi_idx + 1)
        t, o, h, l, c, v = (s.t[sl], s.o[sl].copy(), s.h[sl].copy(), s.l[sl].copy(),
                            s.c[sl].copy(), s.v[sl].copy())
        if len(t) == 0:
            return []
        if price != "last":  # mark = last × (1 + basis); index = last / (1 + premium)
            if price == "mark":
                f = 1 + s.basis[sl] if s.basis is not None else np.ones(len(t))
            else:
                f = 1 / (1 + s.premium[sl]) if s.premium is not None else np.ones(len(t))
            o, h, l, c, v = o * f, h * f, l * f, c * f, np.zeros(len(t))
        # the last base candle may be forming
        frac = (t_ms - t[-1]) / BASE_MS
        if frac < 1:
            lo_p, hi_p = path_range(o[-1], h[-1], l[-1], c[-1], 0.0, frac)
            c[-1] = path_value(o[-1], h[-1], l[-1], c[-1], frac)
            h[-1], l[-1] = hi_p, lo_p
            v[-1] = v[-1] * frac
        ot, oo, hh, ll, cc, vv = aggregate(t, o, h, l, c, v, iv)
        if start is not None:
            keep = ot >= start
            ot, oo, hh, ll, cc, vv = ot[keep], oo[keep], hh[keep], ll[keep], cc[keep], vv[keep]
        ot, oo, hh, ll, cc, vv = (x[-limit:] for x in (ot, oo, hh, ll, cc, vv))
        out = []
        for i in range(len(ot)):
            qv = vv[i] * cc[i]
            out.append([int(ot[i]), _num(oo[i]), _num(hh[i]), _num(ll[i]), _num(cc[i]),
                        _num(vv[i]), int(ot[i] + iv - 1), _num(qv), 1, _num(vv[i] / 2),
                        _num(qv / 2), "0"])
        return out

    def _sums(self, sym: str) -> "RunningSums":
        """Running volume and quote-volume sums, rebuilt when the series grows."""
        s = self.series[sym]
        cum = self._cum.get(sym)
        if cum is None or cum.n != len(s.t):
            cum = self._cum[sym] = RunningSums(s.v, s.c)
        return cum

    STEP_BLOCK = 64  # moments worked out at once for a replay's consecutive steps
    extends = False  # a replay's series are whole; a generated one grows as the clock moves

    def stats_24h(self, sym: str, t_ms: int) -> dict[str, float]:
        """The 24 h ticker's numbers at ``t_ms`` (from blocks, as ``quote``)."""
        got = self._from_block("day", sym, t_ms, self._day_block)
        return got if got is not None else self._stats_one(sym, t_ms)

    def _day_block(self, sym: str, times: np.ndarray) -> dict[str, np.ndarray]:
        return self.day_stats(sym, times, volume=True)

    def _from_block(self, what: str, sym: str, t_ms: int,
                    make: Callable[[str, np.ndarray], dict[str, np.ndarray]]
                    ) -> dict[str, float] | None:
        """``what``'s numbers at ``t_ms`` from a block of moments worked out at once by
        ``make`` (``day_stats`` or ``quotes``), or None when the moment is to be worked out
        alone. An engine stepping candle after candle asks every symbol's quote and 24 h ticker
        at every step; a replay asked at consecutive moments of the base grid gets the next
        STEP_BLOCK moments at once, the same numbers for a fraction of the time. Moments off the
        grid, a step that jumps, and generated markets (``extends``) are worked out alone."""
        key = (what, sym)
        prev, self._asked[key] = self._asked.get(key), t_ms
        if t_ms % BASE_MS or self.extends:
            return None
        got = self._blocks.get(key)
        if got is None or not got[0] <= t_ms < got[0] + self.STEP_BLOCK * BASE_MS:
            if prev != t_ms - BASE_MS:
                return None
            cols = make(sym, t_ms + BASE_MS * np.arange(self.STEP_BLOCK))
            got = self._blocks[key] = (t_ms, [dict(zip(cols, row)) for row in zip(
                *(col.tolist() for col in cols.values()))])
        return dict(got[1][(t_ms - got[0]) // BASE_MS])

    def _stats_one(self, sym: str, t_ms: int) -> dict[str, float]:
        s = self.series[sym]
        i = self.index_at(sym, t_ms)
        j = max(0, i - (DAY_CANDLES - 1))
        last = self.price_at(sym, t_ms)
        if i < 0:
            return {"open": last, "high": last, "low": last, "last": last, "volume": 0.0,
                    "quote_volume": 0.0}
        cum = self._sums(sym)
        (vi, vj), (qi, qj) = ((cum.one(k, i), cum.one(k, j)) for k in (0, 1))
        # the candle still forming counts with the share of its volume traded so far
        done = float(s.v[i]) * min(1.0, max(0.0, (t_ms - s.t[i]) / BASE_MS))
        return {"open": float(s.o[j]), "high": float(max(s.h[j:i].max(initial=last), last)),
                "low": float(min(s.l[j:i].min(initial=last), last)), "last": last,
                "volume": float(vi - vj) + done, "quote_volume": float(qi - qj) + done * last}


class RunningSums:
    """``cumsum`` of the volumes and of volume × close (with a 0 in front), kept a few blocks
    at a time: each block is summed on from the running total at its start, in the same order
    as one cumulative sum over everything, so every value is the same to the last bit, but a
    year of candles does not hold two more arrays of its length (16 bytes a candle)."""

    BLOCK, KEEP = 4096, 3

    def __init__(self, v: np.ndarray, c: np.ndarray) -> None:
        self.n, self.v, self.c = len(v), v, c
        self.blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        # the running totals at each block's start, summed block after block
        starts = np.zeros((2, self.n // self.BLOCK + 2))
        for b in range(len(starts[0]) - 1):
            for k in (0, 1):
                starts[k, b + 1] = self._sum(k, b, starts[k, b])[-1]
        self.starts = starts

    def _sum(self, k: int, b: int, start: float) -> np.ndarray:
        """Running totals at indices b·BLOCK … (b+1)·BLOCK (one past the block's end)."""
        lo, hi = b * self.BLOCK, min(self.n, (b + 1) * self.BLOCK)
        x = self.v[lo:hi] if k == 0 else self.v[lo:hi] * self.c[lo:hi]
        return np.cumsum(np.concatenate(([start], x)))

    def _block(self, k: int, b: int) -> np.ndarray:
        blk = self.blocks.get((k, b))
        if blk is None:
            blk = self.blocks[(k, b)] = self._sum(k, b, self.starts[k, b])
            if len(self.blocks) > 2 * self.KEEP:
                self.blocks.popitem(last=False)
        else:
            self.blocks.move_to_end((k, b))
        return blk

    def at(self, k: int, idx: np.ndarray) -> np.ndarray:
        """Total ``k`` (0 volume, 1 quote volume) before each candle index in ``idx`` (0…n)."""
        idx = np.asarray(idx)
        out = np.empty(idx.shape)
        which = idx // self.BLOCK
        for sel in runs(which):  # one block per run (a screen's moments ascend: a few runs)
            b = int(which[sel[0]])
            out[sel] = self._block(k, b)[idx[sel] - b * self.BLOCK]
        return out

    def one(self, k: int, i: int) -> float:
        """``at`` for one index (the engine's ticker row)."""
        b = i // self.BLOCK
        return float(self._block(k, b)[i - b * self.BLOCK])


def runs(keys: np.ndarray) -> list[np.ndarray]:
    """The positions of each run of equal consecutive ``keys``."""
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.split(np.arange(len(keys)), cuts) if len(keys) else []


def trailing(x: np.ndarray, ends: np.ndarray, w: int, op: np.ufunc, empty: float) -> np.ndarray:
    """``op`` (np.maximum or np.minimum) over ``x[max(0, k − w):k]`` for each k of ``ends``
    (``empty`` where that is empty), in linear time: ``x`` is cut in blocks of ``w``, and a
    window of ``w`` is the suffix of one block and the prefix of the next (van Herk /
    Gil-Werman). Exact: only comparisons."""
    ends = np.asarray(ends, dtype=np.int64)
    out = np.full(len(ends), empty)
    if not len(ends) or ends.max() <= 0:
        return out
    lo = max(0, int(ends.min()) - w)
    seg = x[lo:int(ends.max())]
    n = len(seg)
    rows = np.full(-(-n // w) * w, empty)
    rows[:n] = seg
    rows = rows.reshape(-1, w)
    pre = op.accumulate(rows, axis=1).ravel()
    suf = op.accumulate(rows[:, ::-1], axis=1)[:, ::-1].ravel()
    last = np.clip(ends - 1 - lo, 0, n - 1)
    first = np.clip(ends - w - lo, 0, n - 1)
    # a short window (k ≤ w) starts at 0, a block's start (lo is 0 then): its prefix alone
    got = np.where(ends <= w, pre[last], op(suf[first], pre[last]))
    return np.where(ends > 0, got, out)


def _book(s: Series, last, prem, basis) -> tuple:
    """Bid, ask, mark and index around the last price (one price or an array of them): half
    the spread each side, at least half a tick, on the tick grid and never crossed."""
    if np.ndim(last):
        half = np.maximum(s.spread * last / 2, s.tick / 2)
        bid = np.floor((last - half) / s.tick) * s.tick
        ask = np.ceil((last + half) / s.tick) * s.tick
        with np.errstate(divide="ignore", invalid="ignore"):
            index = np.where(prem > -1, np.true_divide(last, 1 + prem), last)
        return bid, np.where(ask <= bid, bid + s.tick, ask), last * (1 + basis), index
    half = max(s.spread * last / 2, s.tick / 2)  # the same arithmetic, one price
    bid = math.floor((last - half) / s.tick) * s.tick
    ask = math.ceil((last + half) / s.tick) * s.tick
    index = last / (1 + prem) if prem > -1 else last
    return bid, bid + s.tick if ask <= bid else ask, last * (1 + basis), index


def buckets(t: np.ndarray, iv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base candles grouped into candles of ``iv`` ms: each group's open time, first and last
    index."""
    if iv == BASE_MS:
        at = np.arange(len(t))
        return t, at, at
    bucket = t // iv
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:] - 1, len(t) - 1]
    return bucket[starts] * iv, starts, ends


def aggregate(t, o, h, l, c, v, iv: int, groups: tuple | None = None) -> tuple[np.ndarray, ...]:
    """Base candles → candles of ``iv`` ms, grouped by open time (missing candles stay missing).
    ``groups``: ``buckets(t, iv)``, when already known."""
    if iv == BASE_MS:
        return t, o, h, l, c, v
    opens, starts, ends = groups or buckets(t, iv)
    return (opens, o[starts], np.maximum.reduceat(h, starts), np.minimum.reduceat(l, starts),
            c[ends], np.add.reduceat(v, starts))


def _num(x: float) -> str:
    """Exchange-style decimal string."""
    return f"{float(x):.10g}"


_POW10 = np.array([10.0 ** k for k in range(-22, 23)])  # 10^k at k + 22 (a lookup, not a pow)


def as_sent(values: np.ndarray, fmt: Callable[[float], str] = _num,
            places: int | None = None) -> np.ndarray:
    """``float(fmt(x))`` for every x: the numbers a client reads from the exchange's strings,
    10 significant digits (``_num``) or a fixed number of decimal ``places``. Exact and fast:
    the digits are rounded as integers and divided once by a power of ten (both exact, so the
    division lands on the nearest double, as parsing the string does); near-ties and extreme
    exponents take the string route."""
    x = np.asarray(values, dtype=float)
    out = x.copy()
    nz = np.flatnonzero((x != 0) & np.isfinite(x))
    v = x[nz]
    if places is None:
        k = 9 - np.floor(np.log10(np.abs(v))).astype(int)  # ten digits before the point
    else:
        k = np.full(len(v), places)
    ok = np.abs(k) <= 22  # powers of ten exact in float
    scale = _POW10[np.where(ok, k, 0) + 22]
    scaled = v * scale
    n = np.rint(scaled)
    frac = np.abs(scaled - np.trunc(scaled))
    ok &= np.abs(frac - 0.5) > 1e-5  # not a near-tie
    ok &= np.abs(n) < 2.0 ** 53
    if places is None:
        ok &= (np.abs(n) >= 1e9) & (np.abs(n) <= 1e10)  # the exponent guess was right
    with np.errstate(divide="ignore", invalid="ignore"):
        out[nz] = np.where(k > 0, n / scale, n * _POW10[np.where(ok, -k, 0).clip(0) + 22])
    for i in nz[~ok]:
        out[i] = float(fmt(x[i]))
    return out


# ---------------------------------------------------------------------------------------------
# Replay of real candle files

class DataError(ValueError):
    """A candle file is unusable; the message names the file and the line."""


def read_candles_csv(path: Path) -> tuple[np.ndarray, ...]:
    """Read ``open_time_ms,open,high,low,close,volume`` with line-precise error messages; a file
    read before and unchanged since comes from the parsed-candle cache (``candle_cache``)."""
    path = Path(path)
    entry = candle_cache.entry(path)
    got = entry and candle_cache.load(entry)
    if got:
        return got
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.readline()
        got = head.lower().startswith("open_time") and _parse_clean(path)
        if not got:
            lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not got:
        if not lines or not lines[0].lower().startswith("open_time"):
            raise DataError(f"{path}:1: expected the header "
                            "open_time_ms,open,high,low,close,volume")
        got = _parse_lines(path, lines)
    if entry:
        candle_cache.store(entry, got)
    return got


def _parse_lines(path: Path, lines: list[str]) -> tuple[np.ndarray, ...]:
    """Line by line: slow, but names the first bad line."""
    rows = []
    prev = None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < 6:
            raise DataError(f"{path}:{n}: expected 6 columns, found {len(parts)}")
        try:
            t = int(float(parts[0]))
            o, h, l, c, v = (float(x) for x in parts[1:6])
        except ValueError:
            raise DataError(f"{path}:{n}: not a number in {line!r}") from None
        if prev is not None and t <= prev:
            raise DataError(f"{path}:{n}: time {t} is not after the previous row ({prev}); "
                            "rows must be sorted by open time without duplicates")
        if not (h >= max(o, c) and l <= min(o, c) and l > 0):
            raise DataError(f"{path}:{n}: high/low do not enclose open/close")
        rows.append((t, o, h, l, c, v))
        prev = t
    if not rows:
        raise DataError(f"{path}: no candles")
    arr = np.array(rows, dtype=float)
    return (arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5])


def _parse_clean(path: Path) -> tuple[np.ndarray, ...] | None:
    """The whole file at C speed when it is clean (numbers, sorted, high/low enclosing
    open/close); None sends it to the line-by-line reader, which names the bad line."""
    try:
        arr = np.loadtxt(path, delimiter=",", usecols=range(6), ndmin=2, dtype=float,
                         skiprows=1, encoding="utf-8")
    except ValueError:
        return None
    if not len(arr):
        return None
    t = arr[:, 0].astype(np.int64)
    o, h, l, c, v = (arr[:, k] for k in range(1, 6))
    if (np.diff(t) <= 0).any() or not ((h >= np.maximum(o, c)) & (l <= np.minimum(o, c)) &
                                       (l > 0)).all():
        return None
    return t, o.copy(), h.copy(), l.copy(), c.copy(), v.copy()


def symbol_from_filename(name: str) -> tuple[str, str, str]:
    """``ETH_BTC-5m.csv`` → (ETHBTC, ETH, BTC); ``XRPUSDT-5m-futures.csv`` → (XRPUSDT, XRP, USDT)."""
    stem = name.split("-")[0]
    if "_" in stem:
        base, quote = stem.split("_", 1)
    else:
        for q in ("USDT", "USDC", "USD1", "BTC", "ETH"):
            if stem.endswith(q) and len(stem) > len(q):
                base, quote = stem[: -len(q)], q
                break
        else:
            base, quote = stem, "USDT"
    return base + quote, base, quote


# Rough USD value of a quote asset, only used to scale the minimum notional of replayed non-USDT
# pairs (January 2018, when the BTC-quoted files were recorded, BTC traded near 12,000 USD).
QUOTE_USD = {"USDT": 1.0, "USDC": 1.0, "USD1": 1.0, "BTC": 12_000.0, "ETH": 1_000.0}


def mark_basis(t: np.ndarray, c: np.ndarray, mark: np.ndarray) -> np.ndarray:
    """Per 5m candle, mark/last − 1 from an hourly mark-price file: the hour's mark close against
    the close of the hour's last 5m candle, held for every candle of that hour. Hours the mark
    file does not cover get 0 (mark = last)."""
    basis = np.zeros(len(t))
    hour = 3_600_000
    for row in mark:
        t0 = int(row[0])
        inside = (t >= t0) & (t < t0 + hour)
        if not inside.any():
            continue
        last_close = c[np.nonzero(inside)[0][-1]]
        basis[inside] = row[4] / last_close - 1
    return basis


def shared_grid(grids: dict[bytes, np.ndarray], t: np.ndarray) -> np.ndarray:
    """``t``, or an equal open-time column loaded before: symbols of one download share their
    times, and a year of 5m candles for 50 symbols held its one grid 50 times (42 MB). Found by
    a digest of the times (comparing with each column before took time quadratic in the
    symbols when many had the same length and ends but gaps of their own). Every column is
    read-only, so no symbol can change another's times."""
    key = hashlib.blake2b(np.ascontiguousarray(t, dtype=np.int64).data, digest_size=16).digest()
    got = grids.get(key)
    if got is not None and np.array_equal(got, t):
        return got
    t.setflags(write=False)
    grids.setdefault(key, t)
    return t


def replay_market(data_dir: Path, symbols: list[str] | None = None, *, speed: float = 1.0,
                  manual: bool = False, warmup: int = 400, spread: float = 0.0002,
                  interval: str = "5m") -> Market:
    """Load every ``*-5m*.csv`` candle file of a folder (or the requested symbols) on one clock.

    A funding file ``<SYMBOL>-8h-funding.csv`` next to the candles is used for that symbol.
    """
    from mraster.sim.candle_prefetch import ParsingAhead

    data_dir = Path(data_dir)
    files = [f for f in sorted(data_dir.glob(f"*-{interval}*.csv"))
             if "mark" not in f.name and "funding" not in f.name
             and (not symbols or symbol_from_filename(f.name)[0] in symbols)]
    series = []
    grids: dict[bytes, np.ndarray] = {}  # the distinct open-time columns (shared_grid)
    with ParsingAhead(files) as ahead:  # a first run over large files: two processes parse
        for f in files:
            sym, base, quote = symbol_from_filename(f.name)
            ahead.wait(f)
            t, o, h, l, c, v = read_candles_csv(f)
            t = shared_grid(grids, t)
            release_free_memory()  # the parse's buffers, before the next file's are taken
            s = Series(sym, base, quote, t, o, h, l, c, v, spread=spread,
                       min_notional=5.0 / QUOTE_USD.get(quote, 1.0))
            mark = data_dir / f"{sym}-1h-mark.csv"
            if mark.exists():
                s.basis = mark_basis(t, c, np.loadtxt(mark, delimiter=",", skiprows=1, ndmin=2))
            fund = data_dir / f"{sym}-8h-funding.csv"
            if fund.exists():
                arr = np.loadtxt(fund, delimiter=",", skiprows=1, ndmin=2)
                s.funding_times, s.funding = arr[:, 0].astype(np.int64), arr[:, 1]
            series.append(s)
    if symbols:
        missing = sorted(set(symbols) - {s.symbol for s in series})
        if missing:
            raise DataError(f"{data_dir}: no {interval} candle file for {', '.join(missing)}")
    if not series:
        raise DataError(f"{data_dir}: no candle files (*-{interval}*.csv) found")
    start = min(int(s.t[min(warmup, len(s.t) - 1)]) for s in series)
    return Market(series, SimClock(start, speed=speed, manual=manual))


# ---------------------------------------------------------------------------------------------
# Seeded synthetic market

BASES = ["BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX", "LTC",
         "BCH", "NEAR", "APT", "ARB", "OP", "SUI", "SEI", "TIA", "INJ", "ATOM", "FIL", "AAVE",
         "UNI", "ASTER", "PEPE", "WIF", "TON", "ETC"]
# The order of magnitude each borrowed name trades at in USDT (late 2025), so an offline market
# never shows BTCUSDT at 300: a synthetic series starts within about ±12 % of its level. These are
# levels, not prices; the banner says the market is synthetic. Names past the list are SYNnnn.
LEVELS = {"BTC": 95_000, "ETH": 3_300, "SOL": 180, "BNB": 650, "XRP": 2.3, "DOGE": 0.3,
          "ADA": 0.9, "AVAX": 35, "LINK": 20, "DOT": 6, "TRX": 0.25, "LTC": 100, "BCH": 450,
          "NEAR": 5, "APT": 9, "ARB": 0.7, "OP": 1.8, "SUI": 3.5, "SEI": 0.4, "TIA": 5, "INJ": 22,
          "ATOM": 6, "FIL": 5, "AAVE": 300, "UNI": 12, "ASTER": 1.5, "PEPE": 0.00001, "WIF": 2,
          "TON": 5, "ETC": 25}


class SyntheticMarket(Market):
    """Any number of symbols with volatility clustering (GARCH-like), trend regimes, spreads,
    a premium of mark over index and funding rates; extended on demand as the clock advances."""

    CHUNK = 288
    extends = True

    def __init__(self, n_symbols: int = 20, seed: int = 7, *, history: int = 1000,
                 start_ms: int | None = None, speed: float = 1.0, manual: bool = False,
                 quote: str = "USDT") -> None:
        start = int(time.time() * 1000) if start_ms is None else int(start_ms)
        now = start // BASE_MS * BASE_MS  # history up to the candle forming at the start
        self._rngs: dict[str, np.random.Generator] = {}
        self._state: dict[str, list[float]] = {}
        series = []
        root = np.random.default_rng(seed)
        for i in range(n_symbols):
            base = BASES[i] if i < len(BASES) else f"SYN{i:03d}"
            sym = base + quote
            rng = np.random.default_rng([seed, i])
            u = root.uniform(-2, 4.7)  # drawn for every symbol: the other draws stay the same
            price0 = float(LEVELS[base] * 10 ** (((u + 2) / 6.7 - 0.5) * 0.1)) if base in LEVELS \
                else float(10 ** u)
            vol0 = float(root.uniform(0.0015, 0.006))
            spread = float(root.choice([0.0001, 0.0002, 0.0004, 0.0008, 0.004], p=[.3, .3, .2, .15, .05]))
            self._rngs[sym] = rng
            # state: price, variance, drift, premium, funding, volume scale
            self._state[sym] = [price0, vol0 ** 2, 0.0, 0.0, 0.0001, float(10 ** root.uniform(5, 8)) / price0 / 288]
            s = Series(sym, base, quote, np.zeros(0, np.int64), *(np.zeros(0) for _ in range(5)),
                       spread=spread, premium=np.zeros(0), funding=np.zeros(0), basis=np.zeros(0),
                       tick=10.0 ** (math.floor(math.log10(price0)) - 4),
                       step=min(1.0, 10.0 ** math.floor(math.log10(5.0 / price0))),
                       max_leverage=int(root.choice([20, 50, 75, 125])))
            series.append(s)
            self._extend(s, now - history * BASE_MS, history)
        # a running clock starts at the start itself, not the candle's open: the market runs on
        # this computer's time, so its trades and the log agree to the second (a manual clock
        # is stepped by its owner from a candle's open)
        super().__init__(series, SimClock(now if manual else start, speed=speed, manual=manual))

    def _extend(self, s: Series, t_start: int, n: int) -> None:
        rng = self._rngs[s.symbol]
        price, var, drift, prem, fund, vscale = self._state[s.symbol]
        long_var = var
        t = np.arange(n, dtype=np.int64) * BASE_MS + t_start
        o = np.empty(n); h = np.empty(n); l = np.empty(n); c = np.empty(n); v = np.empty(n)
        pr = np.empty(n); fr = np.empty(n); bs = np.empty(n)
        z = rng.standard_normal((n, 4))
        for i in range(n):
            if rng.random() < 0.01:  # regime change: trend up, down or none
                drift = float(rng.choice([-1, 0, 0, 1])) * math.sqrt(var) * 0.15
            ret = drift + math.sqrt(var) * z[i, 0]
            var = 0.90 * var + 0.07 * ret * ret + 0.03 * long_var  # volatility clustering
            o[i] = price
            price = max(price * math.exp(ret), 1e-12)
            c[i] = price
            wick = abs(z[i, 1]) * math.sqrt(var) * 0.6
            wick2 = abs(z[i, 2]) * math.sqrt(var) * 0.6
            h[i] = max(o[i], c[i]) * (1 + wick)
            l[i] = min(o[i], c[i]) * (1 - wick2)
            v[i] = vscale * (0.5 + abs(ret) / math.sqrt(var)) * math.exp(0.3 * z[i, 3])
            prem = 0.95 * prem + 0.00008 * z[i, 3]
            fund = 0.999 * fund + 0.001 * (prem * 0.5 + 0.0001) + 0.00001 * z[i, 1]
            pr[i] = prem
            bs[i] = 0.00002 * z[i, 2]  # mark a couple of basis points off the last trade
            fr[i] = max(-0.003, min(0.003, fund))
        self._state[s.symbol] = [price, var, drift, prem, fund, vscale]
        s.t = np.concatenate([s.t, t]); s.o = np.concatenate([s.o, o]); s.h = np.concatenate([s.h, h])
        s.l = np.concatenate([s.l, l]); s.c = np.concatenate([s.c, c]); s.v = np.concatenate([s.v, v])
        s.premium = np.concatenate([s.premium, pr]); s.funding = np.concatenate([s.funding, fr])
        s.basis = np.concatenate([s.basis, bs])

    def ensure(self, sym: str, t_ms: int) -> None:
        s = self.series[sym]
        while s.t[-1] < t_ms:
            self._extend(s, int(s.t[-1]) + BASE_MS, self.CHUNK)
