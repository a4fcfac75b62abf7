"""Indicators in numpy, with TA-Lib's definitions (Wilder smoothing seeded by a simple mean).

Values before the warm-up are NaN. The ``*_last`` functions give the value at the last candle only,
as the bot needs it once per closed candle, at a fraction of the cost; a test holds them equal to
the last value of the whole-series functions.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=128)
def _powers(a: float, n: int) -> np.ndarray:
    return a ** np.arange(n)


def _recurse(seed: float, start: int, x: np.ndarray, a: float, b: float, n: int) -> np.ndarray:
    """y[start] = seed; y[i] = a·y[i-1] + b·x[i] for i > start (NaN before start).

    In closed form, y[start+k] = a^k·(seed + b·Σ_{j=1..k} a^-j·x[start+j]). For the non-negative
    inputs every indicator here smooths (prices, gains, ranges), the sum has no cancellation, so a
    cumulative sum is exact to about k·1e-16; otherwise (or where a^-k could overflow) a
    convolution is used. Both equal the step-by-step loop within float rounding."""
    out = np.full(n, np.nan)
    out[start] = seed
    m = n - start - 1
    if m <= 0:
        return out
    xs = x[start + 1:n]
    p = _powers(a, m + 1)
    if m * -math.log(a) < 600 and seed >= 0 and xs.min() >= 0:
        out[start + 1:] = p[1:] * (seed + b * np.cumsum(xs / p[1:]))
    else:
        out[start + 1:] = p[1:] * seed + b * np.convolve(xs, p[:m])[:m]
    return out


def _recurse_last(seed: float, start: int, x: np.ndarray, a: float, b: float, n: int) -> float:
    """The last value of ``_recurse`` alone: one dot product (what the bot needs per candle)."""
    m = n - start - 1
    if m <= 0:
        return seed
    p = _powers(a, m + 1)
    return float(p[m] * seed + b * np.dot(x[start + 1:n], p[m - 1::-1]))


def ema(x: np.ndarray, period: int) -> np.ndarray:
    """EMA with k = 2/(n+1), seeded by the SMA of the first n values (TA-Lib's default)."""
    x = np.asarray(x, dtype=float)
    out = np.full_like(x, np.nan)
    if len(x) < period:
        return out
    k = 2.0 / (period + 1)
    return _recurse(float(x[:period].mean()), period - 1, x, 1.0 - k, k, len(x))


def _wilder(x: np.ndarray, period: int, start: int) -> np.ndarray:
    """Wilder's running average over x[start:], seeded by the mean of its first ``period``."""
    out = np.full(len(x), np.nan)
    if len(x) - start < period:
        return out
    seed = start + period - 1
    a = 1.0 / period
    return _recurse(float(x[start:seed + 1].mean()), seed, x, 1.0 - a, a, len(x))


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    close = np.asarray(close, dtype=float)
    out = np.full_like(close, np.nan)
    if len(close) <= period:
        return out
    d = np.diff(close)
    gain = np.concatenate(([0.0], np.where(d > 0, d, 0.0)))
    loss = np.concatenate(([0.0], np.where(d < 0, -d, 0.0)))
    ag = _wilder(gain, period, 1)
    al = _wilder(loss, period, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(al == 0, np.where(ag == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + ag / al))
    out[: period] = np.nan
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    prev = np.concatenate(([np.nan], close[:-1]))
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    tr[0] = np.nan
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    tr = true_range(np.asarray(high, float), np.asarray(low, float), np.asarray(close, float))
    return _wilder(np.nan_to_num(tr), period, 1)


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14,
        last_only: bool = False) -> np.ndarray | float:
    high, low, close = (np.asarray(a, dtype=float) for a in (high, low, close))
    n = len(close)
    out = np.full(n, np.nan)
    if n < 2 * period:
        return out
    up = np.concatenate(([0.0], high[1:] - high[:-1]))
    down = np.concatenate(([0.0], low[:-1] - low[1:]))
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    # TA-Lib: Wilder sums (not means) seeded with the sum of the first period-1 values
    def wsum(x: np.ndarray) -> np.ndarray:
        return _recurse(float(x[1:period].sum()), period - 1, x, 1.0 - 1.0 / period, 1.0, n)
    sp, sm = wsum(plus_dm), wsum(minus_dm)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = 100 * np.abs(sp - sm) / (sp + sm)  # = 100·|+DI − −DI| / (+DI + −DI): TR cancels
    dx[np.isnan(dx)] = 0.0
    first = 2 * period - 1
    smooth = _recurse_last if last_only else _recurse
    return smooth(float(dx[period:first + 1].mean()), first, dx, (period - 1) / period,
                  1.0 / period, n)


# -- the last value only ----------------------------------------------------------------------
def ema_last(x: np.ndarray, period: int) -> float:
    if len(x) < period:
        return float("nan")
    k = 2.0 / (period + 1)
    return _recurse_last(float(x[:period].mean()), period - 1, x, 1.0 - k, k, len(x))


def _wilder_last(x: np.ndarray, period: int, start: int) -> float:
    if len(x) - start < period:
        return float("nan")
    seed = start + period - 1
    a = 1.0 / period
    return _recurse_last(float(x[start:seed + 1].mean()), seed, x, 1.0 - a, a, len(x))


def rsi_last(close: np.ndarray, period: int = 14) -> float:
    if len(close) <= period:
        return float("nan")
    d = np.diff(close)
    gain = np.concatenate(([0.0], np.where(d > 0, d, 0.0)))
    loss = np.concatenate(([0.0], np.where(d < 0, -d, 0.0)))
    ag, al = _wilder_last(gain, period, 1), _wilder_last(loss, period, 1)
    if al == 0:
        return 50.0 if ag == 0 else 100.0
    return 100.0 - 100.0 / (1.0 + ag / al)


def atr_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> float:
    return _wilder_last(np.nan_to_num(true_range(high, low, close)), period, 1)


def adx_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> float:
    n = len(close)
    if n < 2 * period:
        return float("nan")
    return float(adx(high, low, close, period, last_only=True))
