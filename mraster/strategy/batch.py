"""``signals.features`` for every candle of a whole series at once, for the backtest.

The live engine computes the indicators on the last ``LTF_WINDOW`` closed candles each time one
closes. Here the same windows are evaluated together: each Wilder / EMA value at a window's end is
its seed (the mean of the first ``period`` values) carried forward plus a fixed kernel applied to
the rest, so a whole series of windows is one matrix-vector product; ADX's inner smoothing is a
scaled cumulative sum along each window. Results equal ``features`` on the same windows within
float rounding (a test holds them to 1e-9), and the parity test holds the backtest's trades equal
to the live loop's. The higher timeframe has a twelfth as many candles and uses the scalar code.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mraster.market.indicators import _powers, ema_last, true_range

PERIOD = 14


def _last(win: np.ndarray, seed: np.ndarray, s: int, a: float, b: float) -> np.ndarray:
    """The recursion's value at each window's end, seeded at window position ``s``."""
    m = win.shape[1] - 1 - s
    p = _powers(a, m + 1)
    return p[m] * seed + b * (win[:, s + 1:] @ p[m - 1::-1])


def _ema(win: np.ndarray, period: int) -> np.ndarray:
    k = 2.0 / (period + 1)
    return _last(win, win[:, :period].mean(axis=1), period - 1, 1.0 - k, k)


def _wilder(win: np.ndarray, period: int) -> np.ndarray:
    """Wilder's average over window positions 1.. (position 0 has no previous candle)."""
    a = 1.0 / period
    return _last(win, win[:, 1:period + 1].mean(axis=1), period, 1.0 - a, a)


def _wsum_series(win: np.ndarray, period: int) -> np.ndarray:
    """TA-Lib's Wilder sums along each window (NaN before position period-1)."""
    a = 1.0 - 1.0 / period
    out = np.full(win.shape, np.nan)
    seed = win[:, 1:period].sum(axis=1)
    tail = win[:, period:]
    m = tail.shape[1]
    p = _powers(a, m + 1)
    out[:, period - 1] = seed
    out[:, period:] = p[1:] * (seed[:, None] + np.cumsum(tail / p[1:], axis=1))
    return out


def ltf_table(h: np.ndarray, l: np.ndarray, c: np.ndarray, window: int,
              chunk: int = 512) -> dict[str, np.ndarray]:
    """RSI, ATR, ADX, EMA21 and EMA55 at the end of every ``window``-candle window: entry ``k`` is
    the window ending at candle ``k + window - 1``. Computed ``chunk`` windows at a time, so the
    memory stays a few MB whatever the length of the history."""
    d = np.diff(c)
    gain = np.concatenate(([0.0], np.where(d > 0, d, 0.0)))
    loss = np.concatenate(([0.0], np.where(d < 0, -d, 0.0)))
    tr = true_range(h, l, c)
    tr[0] = 0.0
    up = np.concatenate(([0.0], h[1:] - h[:-1]))
    down = np.concatenate(([0.0], l[:-1] - l[1:]))
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    views = {k: sliding_window_view(x, window) for k, x in
             (("gain", gain), ("loss", loss), ("tr", tr), ("pdm", plus_dm), ("mdm", minus_dm), ("c", c))}
    n = len(c) - window + 1
    out = {k: np.empty(n) for k in ("rsi", "atr", "adx", "ema_fast", "ema_slow")}
    for lo in range(0, n, chunk):
        part = slice(lo, min(n, lo + chunk))
        for k, v in _windows({k: v[part] for k, v in views.items()}).items():
            out[k][part] = v
    return out


def _windows(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ag, al = _wilder(w["gain"], PERIOD), _wilder(w["loss"], PERIOD)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(al == 0, np.where(ag == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + ag / al))
    sp, sm = _wsum_series(w["pdm"], PERIOD), _wsum_series(w["mdm"], PERIOD)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = 100 * np.abs(sp - sm) / (sp + sm)
    dx[np.isnan(dx)] = 0.0
    first = 2 * PERIOD - 1
    adx = _last(dx, dx[:, PERIOD:first + 1].mean(axis=1), first, (PERIOD - 1) / PERIOD, 1.0 / PERIOD)
    return {"rsi": rsi, "atr": _wilder(w["tr"], PERIOD), "adx": adx,
            "ema_fast": _ema(w["c"], 21), "ema_slow": _ema(w["c"], 55)}


def htf_slopes(closes: np.ndarray, window: int, min_len: int) -> np.ndarray:
    """The higher-timeframe EMA55 slope over 4 candles for the window ending at each candle (NaN
    while fewer than ``min_len`` candles exist): the scalar code, as the live engine runs it."""
    out = np.full(len(closes), np.nan)
    for j in range(min_len - 1, len(closes)):
        w = closes[max(0, j + 1 - window):j + 1]
        eh1, eh5 = ema_last(w, 55), ema_last(w[:-4], 55)
        out[j] = eh1 / eh5 - 1 if eh5 > 0 else 0.0
    return out
