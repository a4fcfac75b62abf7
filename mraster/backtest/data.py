"""ReplayData: the engine's candle windows and features, straight from the replay's arrays.

Live, the engine asks the exchange for candles and computes the indicators once per closed
candle. A backtest knows the whole history in advance, so it cuts the same windows (the last
``LTF_WINDOW`` / ``HTF_WINDOW`` closed candles at each step) as array views and takes their features
from tables computed for all windows at once: the indicators' ``*_last`` functions take many
windows as the rows of one matrix, so it is the live code, run in bulk. Only candles closed at the
step's time are ever returned: no look-ahead.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import replace
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mraster.market.indicators import (adx_from_parts, atr_from_moves, ema_last, moves,
                                       rsi_from_moves)
from mraster.strategy.elementwise import ops
from mraster.sim.market import BASE_MS, INTERVAL_MS, Market, aggregate, buckets, runs
from mraster.strategy.signals import (ADX_PERIOD, EMA_FAST, EMA_SLOW, HTF_EMA, HTF_SLOPE_LAG,
                                      HTF_WINDOW, LTF_WINDOW, MIN_HTF, MIN_LTF, Candles, Features,
                                      features)


FIRST_AHEAD, MAX_AHEAD = 8, 512  # windows computed at once when the engine asks for one
# windows per block, blocks kept (the engine's and the one the screen reads ahead), rows per call
TABLE_BLOCK, TABLE_KEEP, CHUNK = 4096, 2, 512
# computed only for the windows asked for: the screen needs them only where the RSI fired
LAZY = {"trend": ("atr", "ema_fast", "ema_slow"), "adx": ("adx",)}
GROUP = {name: group for group, names in LAZY.items() for name in names}


class WindowTable:
    """RSI, ATR, EMA21, EMA55 and ADX of every ``window``-candle window (entry ``k`` ends at
    candle ``k + window - 1``), computed a block of windows at a time when first asked for; only
    the last few blocks are kept, so memory does not grow with the history.

    Each block runs the live functions on its windows as the rows of one matrix (``CHUNK`` at a
    time), from the moves between its own candles: every window computes the same numbers alone
    or among thousands, in whichever block. RSI is computed for the whole block; the others only
    for the windows asked for (``LAZY``): the screen needs them where a signal fired (about a
    third of the moments), ADX costs as much as the rest together. While the engine steps
    candle by candle, a growing run of the next windows is computed with the one it asks for."""

    def __init__(self, h: np.ndarray, l: np.ndarray, c: np.ndarray, window: int) -> None:
        self.h, self.l, self.c, self.window = h, l, c, window
        self.n = len(c) - window + 1
        self.blocks: OrderedDict[int, dict] = OrderedDict()
        self.last = {group: -2 for group in LAZY}  # the window the engine asked for last
        self.ahead = {group: FIRST_AHEAD for group in LAZY}
        self.prefetch = {group: True for group in LAZY}  # off once the screen filled it in bulk

    def _block(self, b: int) -> dict:
        blk = self.blocks.get(b)
        if blk is not None:
            self.blocks.move_to_end(b)
            return blk
        lo, hi = b * TABLE_BLOCK, min(self.n, (b + 1) * TABLE_BLOCK)
        end = hi + self.window - 1
        mv = moves(self.h[lo:end], self.l[lo:end], self.c[lo:end])
        # ADX's +DM − −DM and +DM + −DM, once for the block instead of once per window
        mv["dmd"], mv["dms"] = np.subtract(mv["pdm"], mv["mdm"]), np.add(mv["pdm"], mv["mdm"])
        mv = {k: sliding_window_view(v, self.window - 1) for k, v in mv.items()}
        m = hi - lo
        blk = {"rsi": np.empty(m), "done": {g: np.zeros(m, bool) for g in LAZY},
               "close": sliding_window_view(self.c[lo:end], self.window),
               **{k: mv[k] for k in ("tr", "pdm", "mdm", "dmd", "dms")},
               **{name: np.full(m, np.nan) for name in GROUP}}
        for a in range(0, m, CHUNK):
            part = slice(a, min(m, a + CHUNK))
            blk["rsi"][part] = rsi_from_moves(mv["gain"][part], mv["loss"][part])
        self.blocks[b] = blk
        if len(self.blocks) > TABLE_KEEP:
            self.blocks.popitem(last=False)
        return blk

    def row(self, k: int, adx: bool = True) -> tuple:
        """RSI, ATR, EMA21, EMA55 and ADX (NaN unless ``adx``) of window ``k``: the engine's
        one step, looked up in one block."""
        blk, r = self._block(k // TABLE_BLOCK), k % TABLE_BLOCK
        for group in ("trend", "adx") if adx else ("trend",):
            if blk["done"][group][r]:
                self.last[group] = k
            else:
                self._at(k, group)
        return (blk["rsi"][r], blk["atr"][r], blk["ema_fast"][r], blk["ema_slow"][r],
                blk["adx"][r] if adx else np.nan)

    def get(self, name: str, k: np.ndarray) -> np.ndarray:
        """One indicator at many windows (fastest ascending, as the screen's moments are)."""
        k = np.asarray(k)
        out = np.empty(k.shape)
        which = k // TABLE_BLOCK
        for sel in runs(which):
            blk = self._block(int(which[sel[0]]))
            idx = k[sel] % TABLE_BLOCK
            if name in GROUP:
                todo = idx[~blk["done"][GROUP[name]][idx]]
                self._fill(blk, GROUP[name], todo[np.r_[True, todo[1:] != todo[:-1]]]
                           if len(todo) else todo)
            out[sel] = blk[name][idx]
        return out

    def _at(self, k: int, group: str) -> None:
        blk = self._block(k // TABLE_BLOCK)
        r = k % TABLE_BLOCK
        done = blk["done"][group]  # (``row`` asks only for windows not done yet)
        if k - 1 == self.last[group] and self.prefetch[group]:  # stepping candle by candle:
            run = np.arange(r, min(len(done), r + self.ahead[group]))  # take the next ones too
            need = run[~done[run]]
            self.ahead[group] = min(2 * self.ahead[group], MAX_AHEAD)
        else:
            need = np.array([r])
            self.ahead[group] = FIRST_AHEAD
        self.last[group] = k
        self._fill(blk, group, need)

    @staticmethod
    def _fill(blk: dict, group: str, need: np.ndarray) -> None:
        for a in range(0, len(need), CHUNK):
            part = need[a:a + CHUNK]
            if group == "trend":
                blk["atr"][part] = atr_from_moves(blk["tr"][part])
                w = blk["close"][part]
                blk["ema_fast"][part], blk["ema_slow"][part] = \
                    ema_last(w, EMA_FAST), ema_last(w, EMA_SLOW)
            else:
                k = ADX_PERIOD - 1  # the moves that seed ADX's sums, then the rest
                blk["adx"][part] = adx_from_parts(blk["pdm"][part, :k], blk["mdm"][part, :k],
                                                  blk["dmd"][part, k:], blk["dms"][part, k:])
            blk["done"][group][part] = True


def htf_slopes(closes: np.ndarray, window: int, min_len: int) -> np.ndarray:
    """The higher timeframe's EMA55 slope over 4 candles for the window ending at each candle
    (NaN while fewer than ``min_len`` exist): full windows as the rows of one matrix, the first
    growing ones one at a time."""
    out = np.full(len(closes), np.nan)

    def slope(w: np.ndarray):
        eh1, eh5 = ema_last(w, HTF_EMA), ema_last(w[..., :-HTF_SLOPE_LAG], HTF_EMA)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(eh5 > 0, eh1 / eh5 - 1, 0.0)
    for j in range(min_len - 1, min(window - 1, len(closes))):
        out[j] = slope(closes[:j + 1])
    if len(closes) >= window:
        out[window - 1:] = slope(sliding_window_view(closes, window))
    return out


class _Symbol:
    """One symbol's signal-timeframe candles, and of its trend timeframe only the open times and
    the slopes: the engine's trend windows are aggregated from the base candles
    when it asks for one (a year of 30m candles for 50 symbols kept whole was 40 MB)."""

    def __init__(self, s, ltf_ms: int, htf_ms: int,
                 grid: Callable[[np.ndarray, int], tuple]) -> None:
        """``grid(t, iv)``: ``buckets(t, iv)``, once for all symbols with these open times."""
        self.s, self.ltf_ms, self.htf_ms = s, ltf_ms, htf_ms
        self.ltf = aggregate(s.t, s.o, s.h, s.l, s.c, s.v, ltf_ms, grid(s.t, ltf_ms))
        t, o, h, l, c, v = self.ltf
        self.table = WindowTable(h, l, c, LTF_WINDOW) if len(c) >= LTF_WINDOW else None
        self.htf_t, _, ends = grid(s.t, htf_ms)
        self.slope = htf_slopes(s.c[ends], HTF_WINDOW, MIN_HTF)
        self._htf: tuple[tuple[int, int], Candles] | None = None  # the last trend window

    @staticmethod
    def window(arrays, i: int, n: int) -> Candles:
        lo = max(0, i + 1 - n)
        t, o, h, l, c, v = (a[lo:i + 1] for a in arrays)
        return Candles(t, o, h, l, c, v)

    def htf_window(self, j: int, n: int) -> Candles:
        """The trend candles ``j - n + 1 … j``, aggregated from the base candles of their
        buckets: the same groups, so the same numbers as aggregating the whole history."""
        if self._htf is not None and self._htf[0] == (j, n):
            return self._htf[1]  # the engine asks at every step; a trend candle lasts several
        s, lo = self.s, max(0, j + 1 - n)
        if j < 0:
            return Candles(*(x[:0] for x in (s.t, s.o, s.h, s.l, s.c, s.v)))
        a, b = s.t.searchsorted(self.htf_t[lo]), s.t.searchsorted(self.htf_t[j] + self.htf_ms)
        got = Candles(*aggregate(*(x[a:b] for x in (s.t, s.o, s.h, s.l, s.c, s.v)), self.htf_ms))
        self._htf = ((j, n), got)
        return got


ROW_BLOCK = 512  # moments of 24 h ticker numbers computed at once for the sentinel


class ReplayData:
    def __init__(self, market: Market, interval: str, htf_interval: str) -> None:
        self.ok = interval in INTERVAL_MS and htf_interval in INTERVAL_MS and \
            INTERVAL_MS[interval] % BASE_MS == 0 and INTERVAL_MS[htf_interval] % BASE_MS == 0
        grids: dict[tuple[int, int], tuple] = {}  # symbols sharing open times share their groups

        def grid(t: np.ndarray, iv: int) -> tuple:
            key = (id(t), iv)  # (every series' array is alive while this is asked)
            if key not in grids:
                grids[key] = buckets(t, iv)
            return grids[key]
        self.symbols = {sym: _Symbol(s, INTERVAL_MS[interval], INTERVAL_MS[htf_interval], grid)
                        for sym, s in market.series.items()} if self.ok else {}
        self.market = market
        self._assessed: dict[str, dict[int, dict]] = {}  # per symbol: the window's assessments
        self._rows: dict[str, dict[int, dict[str, np.ndarray]]] = {}  # see _day_row
        # per symbol: the blocks of moments looked at, and the moments of them not green
        self._warnings: dict[str, tuple[int, int, list[int]]] = {}

    def sentinel_label(self, sym: str, now: int, decay_minutes: float) -> dict:
        """The sentinel's label at ``now`` as a replay stepping every candle would have it: the
        labels of the steps inside the decay window, folded in order (a warning only lasts its
        decay, so nothing older can matter). Exact whichever steps the backtest skipped."""
        from mraster.ai import sentinel
        from mraster.sim.exchange import ticker_row

        span = int(decay_minutes * 60_000)
        seen = self._assessed.setdefault(sym, {})
        if span > 0 and now % BASE_MS == 0:
            first = now - (span - 1) // BASE_MS * BASE_MS  # the window's first moment
            if not self._warned(sym, first, now):
                # every moment of the window green: the fold keeps the first one's time and the
                # last one's assessment, so only that one is needed
                got = seen.get(now)
                if got is None:
                    got = seen[now] = sentinel.assess(self._day_row(sym, now))
                    if len(seen) > 2 * (now - first) // BASE_MS + 8:
                        for t in [t for t in seen if t < first]:
                            del seen[t]
                return {**got, "since": first, "until": now}
        times = [t for t in range(now - (span // BASE_MS) * BASE_MS, now + 1, BASE_MS)
                 if t > now - span]
        if times:
            for t in [t for t in seen if t < times[0]]:
                del seen[t]  # out of the window for good (steps only move forward)
        moments = []
        for t in times:
            got = seen.get(t)
            if got is None:
                got = seen[t] = sentinel.assess(self._day_row(sym, t) if t % BASE_MS == 0
                                                else ticker_row(self.market, sym, t))
            moments.append((t, got))
        return sentinel.fold_all(moments, decay_minutes)

    def _row_block(self, sym: str, block: int) -> dict[str, np.ndarray]:
        """The 24 h ticker numbers of ``ROW_BLOCK`` moments of the base grid at once
        (``day_changes``), and the sentinel's rank of each once ``_warned`` asked."""
        cache = self._rows.setdefault(sym, {})
        got = cache.get(block)
        if got is None:
            for old in [b for b in cache if b < block - 1]:
                del cache[old]
            got = cache[block] = self.day_changes(
                sym, block * BASE_MS * ROW_BLOCK + BASE_MS * np.arange(ROW_BLOCK))
        return got

    def _warned(self, sym: str, first: int, last: int) -> bool:
        """Was any moment of the base grid from ``first`` to ``last`` assessed yellow or red?
        From the moments of the blocks around them that were (``sentinel.ranks``: the same
        labels as ``assess`` on the same numbers), kept per symbol as a sorted list."""
        span = BASE_MS * ROW_BLOCK
        got = self._warnings.get(sym)
        if got is None or not got[0] <= first // span <= last // span <= got[1]:
            from mraster.ai.sentinel import ranks

            moments: list[int] = []
            for block in range(first // span, last // span + 1):
                d = self._row_block(sym, block)
                if "rank" not in d:  # (a block is asked again when the window moves on)
                    d["rank"] = ranks(d["last"], d["high"], d["low"], d["change"],
                                      lambda at, q=d["quote_volume"]: q[at])
                moments += ((block * ROW_BLOCK + np.flatnonzero(d["rank"])) * BASE_MS).tolist()
            got = self._warnings[sym] = (first // span, last // span, moments)
        k = bisect.bisect_left(got[2], first)
        return k < len(got[2]) and got[2][k] <= last

    def _day_row(self, sym: str, t: int) -> dict[str, float]:
        """The numbers ``sentinel.assess`` reads from the 24 h ticker row at ``t`` (a moment of
        the base grid), computed for a block of moments at once (``_row_block``)."""
        block = t // (BASE_MS * ROW_BLOCK)
        got = self._row_block(sym, block)
        k = t // BASE_MS - block * ROW_BLOCK
        return {"lastPrice": float(got["last"][k]), "highPrice": float(got["high"][k]),
                "lowPrice": float(got["low"][k]), "priceChangePercent": float(got["change"][k]),
                "quoteVolume": float(got["quote_volume"][k])}

    def day_changes(self, sym: str, times: np.ndarray,
                    fields: tuple[str, ...] = ("last", "high", "low", "change", "quote_volume")
                    ) -> dict[str, np.ndarray]:
        """The 24 h ticker's numbers at many moments, as a client parses them from the rows
        (``sim.exchange.ticker_row``): last, high, low, change % and quote volume (those of
        ``fields``), with the unparsed stats under ``raw``."""
        from mraster.sim.market import as_sent

        st = self.market.day_stats(sym, times)
        out = {k: as_sent(st[k]) for k in fields if k != "change"}
        if "change" in fields:
            with np.errstate(divide="ignore", invalid="ignore"):
                pct = 100 * (st["last"] - st["open"]) / st["open"]
            out["change"] = as_sent(pct, lambda x: f"{x:.3f}", places=3)
        out["raw"] = st
        return out

    def sentinel_ranks(self, sym: str, times: np.ndarray, decay_minutes: float,
                       red_only: bool = False) -> np.ndarray:
        """The rank of ``sentinel_label`` (0 green, 1 yellow, 2 red) at each of ``times``
        (consecutive steps of the base grid) at once: the same fold over the same decay
        window, on every moment together. ``red_only``: only red is told apart (yellow comes
        back as 0), from the few moments near red (``_red_windows``)."""
        from mraster.ai.sentinel import ranks
        from mraster.sim.market import as_sent

        span = int(decay_minutes * 60_000)
        back = [k for k in range(span // BASE_MS + 1) if k * BASE_MS < span]  # oldest last
        deep = max(back)
        grid = np.concatenate([times[0] - BASE_MS * np.arange(deep, 0, -1), times])
        if red_only:
            return np.where(self._red_windows(sym, grid, deep), 2, 0).astype(np.int8)
        d = self.day_changes(sym, grid, ("last", "high", "low", "change"))
        fresh = ranks(d["last"], d["high"], d["low"], d["change"],
                      lambda at: as_sent(d["raw"]["quote_volume"][at]))
        n = len(times)
        rank = np.full(n, -1, np.int8)
        until = np.full(n, np.iinfo(np.int64).min, np.int64)
        for k in reversed(back):  # sentinel.fold, oldest moment of each window first
            at = grid[deep - k:deep - k + n]
            new = fresh[deep - k:deep - k + n]
            keep = (rank > new) & (until > at)
            until = np.where(keep, until, np.where(new > 0, at + span, at))
            rank = np.where(keep, rank, new)
        return rank

    def _red_windows(self, sym: str, grid: np.ndarray, deep: int) -> np.ndarray:
        """For each moment from ``grid[deep]`` on: was any moment of its decay window (itself
        and the ``deep`` before it) assessed red? That is exactly when its folded label is red
        (red outranks everything, and each red lasts its full decay). Only the moments whose
        unparsed numbers come near red are assessed exactly (parsing moves the risk by less
        than 1e-4: the change has three decimals)."""
        from mraster.ai.sentinel import risk_of
        from mraster.sim.market import as_sent

        st = self.market.day_stats(sym, grid)
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = 100 * (st["last"] - st["open"]) / st["open"]
        near = np.flatnonzero(risk_of(st["last"], st["high"], st["low"], pct)[0] >= 0.9 - 1e-3)
        red = np.zeros(len(grid) + 1, np.int64)  # red[k + 1]: moment k assessed red
        if len(near):
            last, high, low = (as_sent(st[k][near]) for k in ("last", "high", "low"))
            change = as_sent(pct[near], lambda x: f"{x:.3f}", places=3)
            red[near + 1] = risk_of(last, high, low, change)[0] >= 0.9
        seen = np.cumsum(red)
        return seen[deep + 1:] - seen[:len(grid) - deep] > 0

    @staticmethod
    def _indices(x: _Symbol, now):
        """Indices of the last closed signal and trend candles at ``now`` (one moment or many):
        closed means open time + interval − 1 < now."""
        return (np.searchsorted(x.ltf[0], now - x.ltf_ms, side="right") - 1,
                np.searchsorted(x.htf_t, now - x.htf_ms, side="right") - 1)

    def candles(self, sym: str, now: int) -> tuple[Candles, Candles] | None:
        x = self.symbols.get(sym)
        if x is None:
            return None
        i, j = (int(v) for v in self._indices(x, now))
        return x.window(x.ltf, i, LTF_WINDOW), x.htf_window(j, HTF_WINDOW)

    def closes(self, sym: str, now: int) -> np.ndarray | None:
        """The closes of ``candles(sym, now)``'s signal window (what FastTP reads)."""
        x = self.symbols.get(sym)
        if x is None:
            return None
        i = int(self._indices(x, now)[0])
        return x.ltf[4][max(0, i + 1 - LTF_WINDOW):i + 1]

    def features(self, sym: str, ltf: Candles, htf: Candles,
                 adx_if: Callable[[Features], bool] | None = None) -> Features | None:
        """``features(ltf, htf)`` from the tables. ``adx_if``: asked with the other features,
        whether ADX is needed (NaN when not): it costs as much as the rest and only feeds the
        edge, once a signal fired — a backtest's engine asks only then."""
        x = self.symbols[sym]
        if len(ltf) < MIN_LTF or len(htf) < MIN_HTF:
            return None
        if x.table is None or len(ltf) < LTF_WINDOW:
            return features(ltf, htf)  # the first windows of the data, still growing
        # the windows end at these candles (``candles`` cut them from the same arrays)
        i, j = int(x.ltf[0].searchsorted(ltf.t[-1])), int(x.htf_t.searchsorted(htf.t[-1]))
        f = _from_tables(x, i, j, adx=adx_if is None)
        out = Features(**{k: int(v) if k.endswith("_trend") else float(v)
                          for k, v in vars(f).items()})
        if adx_if is not None and adx_if(out):
            out.adx = float(x.table.row(i - LTF_WINDOW + 1)[4])
        return out

    def feature_table(self, sym: str, times: np.ndarray) -> tuple[Features, np.ndarray,
                                                                   np.ndarray]:
        """Features at many moments at once (arrays), where they are valid (full windows only;
        the first, still growing windows are left to ``features``) and the indicator table's
        rows they come from. ATR, the EMAs and ADX stay NaN until ``fill`` is asked for the
        moments that need them."""
        x = self.symbols[sym]
        i, j, ok = self._full(x, times)
        rows = i - LTF_WINDOW + 1
        nan = np.full(len(times), np.nan)
        rsi = nan if x.table is None else x.table.get("rsi", rows)
        return _assemble(x, i, j, rsi, nan, nan, nan, nan), ok, rows

    def fill(self, sym: str, rows: np.ndarray, f: Features, need: np.ndarray,
             groups: tuple[str, ...] = tuple(LAZY)) -> Features:
        """``f`` (from ``feature_table``, with its ``rows``) with the indicators of ``groups``
        (ATR, the EMAs, ADX) computed at the moments ``need``."""
        x = self.symbols[sym]
        if not need.any():  # (always so where the history holds no full window: no table)
            return f
        k = rows[need]
        got = {name: getattr(f, name) for name in GROUP}
        for name in (n for g in groups for n in LAZY[g]):
            got[name] = got[name].copy()
            got[name][need] = x.table.get(name, k)
        if "adx" in groups:
            x.table.prefetch["adx"] = False  # the engine's other moments never use their ADX
        # the candles' part of ``f`` stays as it is
        return replace(f, **_indicators(f.price, got["atr"], got["ema_fast"], got["ema_slow"],
                                        got["adx"], np))

    def _full(self, x: _Symbol, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The candles the windows at ``times`` end at, and where those windows are full (the
        others point at the first full window, or the last candle of a history too short for
        one; their numbers are not used)."""
        i, j = self._indices(x, times)
        ok = (i + 1 >= LTF_WINDOW) & (j + 1 >= MIN_HTF) if x.table is not None else \
            np.zeros(len(times), bool)
        return np.where(ok, i, min(LTF_WINDOW, len(x.ltf[0])) - 1), np.where(ok, j, 0), ok


def _from_tables(x: _Symbol, i: int, j: int, adx: bool = True) -> Features:
    """Features of the full windows ending at signal candle ``i`` and trend candle ``j``, from
    the tables (the engine's one step)."""
    return _assemble(x, i, j, *x.table.row(i - LTF_WINDOW + 1, adx))


def _assemble(x: _Symbol, i, j, r, a, ef, es, ax) -> Features:
    """Features from the indicators of the windows ending at ``i`` and ``j`` (numbers, or
    arrays of indices) and the candles themselves."""
    t, o, h, l, c, v = x.ltf
    xp = ops(i)
    price, slope = c[i], x.slope[j]
    rng, body = h[i] - l[i], xp.abs(c[i] - o[i])
    if xp is np:
        with np.errstate(divide="ignore", invalid="ignore"):
            wick = np.where(rng > 0, (rng - body) / rng, 0.0)
    else:
        wick = (rng - body) / rng if rng > 0 else 0.0
    return Features(price=price, rsi=r, **_indicators(price, a, ef, es, ax, xp),
                    htf_trend=xp.where(slope > 0, 1, -1), htf_slope=slope, wickiness=wick,
                    ret1=c[i] / c[i - 1] - 1, ret3=c[i] / c[i - 3] - 1)


def _indicators(price, a, ef, es, ax, xp) -> dict:
    """The features made of the lazily computed indicators (ATR, the EMAs, ADX)."""
    return {"atr": a, "atr_pct": a / price, "adx": ax, "ema_fast": ef, "ema_slow": es,
            "ltf_trend": xp.where(ef > es, 1, -1)}
