"""ReplayData: the engine's candle windows and features, straight from the replay's arrays.

Live, the engine asks the exchange for candles and computes the indicators once per closed
candle. A backtest knows the whole history in advance, so it cuts the same windows (the last
``LTF_WINDOW`` / ``HTF_WINDOW`` closed candles at each step) as array views and takes their features
from tables computed for all windows at once: the indicators' ``*_last`` functions take many
windows as the rows of one matrix, so it is the live code, run in bulk. Only candles closed at the
step's time are ever returned: no look-ahead.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mraster.market.indicators import (adx_from_moves, atr_from_moves, ema_last, moves,
                                       rsi_from_moves)
from mraster.sim.market import BASE_MS, INTERVAL_MS, Market, aggregate
from mraster.strategy.signals import (HTF_WINDOW, LTF_WINDOW, MIN_HTF, MIN_LTF, Candles, Features,
                                      features)


def ltf_table(h: np.ndarray, l: np.ndarray, c: np.ndarray, window: int,
              chunk: int = 512) -> dict[str, np.ndarray]:
    """RSI, ATR, ADX, EMA21 and EMA55 of every ``window``-candle window (entry ``k`` ends at
    candle ``k + window - 1``): the moves between candles are computed once for the whole
    history, then the live functions run on ``chunk`` windows at a time (memory stays a few MB)."""
    mv = {k: sliding_window_view(v, window - 1) for k, v in moves(h, l, c).items()}
    cw = sliding_window_view(c, window)
    n = len(cw)
    out = {k: np.empty(n) for k in ("rsi", "atr", "adx", "ema_fast", "ema_slow")}
    for lo in range(0, n, chunk):
        part = slice(lo, min(n, lo + chunk))
        out["rsi"][part] = rsi_from_moves(mv["gain"][part], mv["loss"][part])
        out["atr"][part] = atr_from_moves(mv["tr"][part])
        out["adx"][part] = adx_from_moves(mv["pdm"][part], mv["mdm"][part])
        out["ema_fast"][part] = ema_last(cw[part], 21)
        out["ema_slow"][part] = ema_last(cw[part], 55)
    return out


def htf_slopes(closes: np.ndarray, window: int, min_len: int) -> np.ndarray:
    """The higher timeframe's EMA55 slope over 4 candles for the window ending at each candle
    (NaN while fewer than ``min_len`` exist); a twelfth as many candles, so one at a time."""
    out = np.full(len(closes), np.nan)
    for j in range(min_len - 1, len(closes)):
        w = closes[max(0, j + 1 - window):j + 1]
        eh1, eh5 = ema_last(w, 55), ema_last(w[:-4], 55)
        out[j] = eh1 / eh5 - 1 if eh5 > 0 else 0.0
    return out


class _Symbol:
    def __init__(self, s, ltf_ms: int, htf_ms: int) -> None:
        self.ltf_ms, self.htf_ms = ltf_ms, htf_ms
        self.ltf = aggregate(s.t, s.o, s.h, s.l, s.c, s.v, ltf_ms)
        self.htf = aggregate(s.t, s.o, s.h, s.l, s.c, s.v, htf_ms)
        t, o, h, l, c, v = self.ltf
        self.table = ltf_table(h, l, c, LTF_WINDOW) if len(c) >= LTF_WINDOW else None
        self.slope = htf_slopes(self.htf[4], HTF_WINDOW, MIN_HTF)
        self.at: tuple[int, int] = (-1, -1)  # indices of the last windows handed out

    def window(self, arrays, i: int, n: int) -> Candles:
        lo = max(0, i + 1 - n)
        t, o, h, l, c, v = (a[lo:i + 1] for a in arrays)
        return Candles(t, o, h, l, c, v)


class ReplayData:
    def __init__(self, market: Market, interval: str, htf_interval: str) -> None:
        self.ok = interval in INTERVAL_MS and htf_interval in INTERVAL_MS and \
            INTERVAL_MS[interval] % BASE_MS == 0 and INTERVAL_MS[htf_interval] % BASE_MS == 0
        self.symbols = {sym: _Symbol(s, INTERVAL_MS[interval], INTERVAL_MS[htf_interval])
                        for sym, s in market.series.items()} if self.ok else {}

    def candles(self, sym: str, now: int) -> tuple[Candles, Candles] | None:
        x = self.symbols.get(sym)
        if x is None:
            return None
        # closed: open time + interval - 1 < now
        i = int(np.searchsorted(x.ltf[0], now - x.ltf_ms, side="right")) - 1
        j = int(np.searchsorted(x.htf[0], now - x.htf_ms, side="right")) - 1
        x.at = (i, j)
        return x.window(x.ltf, i, LTF_WINDOW), x.window(x.htf, j, HTF_WINDOW)

    def features(self, sym: str, ltf: Candles, htf: Candles) -> Features | None:
        x = self.symbols[sym]
        i, j = x.at
        if len(ltf) < MIN_LTF or len(htf) < MIN_HTF:
            return None
        if x.table is None or len(ltf) < LTF_WINDOW:
            return features(ltf, htf)  # the first windows of the data, still growing
        k = i - LTF_WINDOW + 1
        tb = x.table
        c = ltf.c
        price, a, ef, es, slope = float(c[-1]), float(tb["atr"][k]), float(tb["ema_fast"][k]), \
            float(tb["ema_slow"][k]), float(x.slope[j])
        rng = ltf.h[-1] - ltf.l[-1]
        body = abs(ltf.c[-1] - ltf.o[-1])
        return Features(price=price, rsi=float(tb["rsi"][k]), atr=a, atr_pct=float(a / price),
                        adx=float(tb["adx"][k]), ema_fast=ef, ema_slow=es,
                        ltf_trend=1 if ef > es else -1, htf_trend=1 if slope > 0 else -1,
                        htf_slope=slope, wickiness=float((rng - body) / rng if rng > 0 else 0.0),
                        ret1=float(c[-1] / c[-2] - 1), ret3=float(c[-1] / c[-4] - 1))
