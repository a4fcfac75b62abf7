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


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
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
    return _recurse(float(dx[period:first + 1].mean()), first, dx, (period - 1) / period,
                    1.0 / period, n)


# -- the last value only: of one window (1-D) or of many windows at once (2-D, one per row) -------
def _last(x: np.ndarray, seed, s: int, a: float, b: float):
    """The value of ``_recurse`` at the end of each window, seeded at position ``s``:
    a^m·seed + b·Σ a^(m-1-j)·x[s+1+j] — a dot product per window instead of a loop."""
    m = x.shape[-1] - 1 - s
    if m <= 0:
        return seed
    top, w = _weights(a, m)
    xs = x[..., s + 1:]
    if xs.strides[-1] != xs.itemsize:  # e.g. a column of the live client's parsed candles
        xs = np.ascontiguousarray(xs)  # (einsum sums strided operands in another order)
    # einsum sums each window in its own loop: the same value alone or among thousands
    return top * seed + b * np.einsum("...j,j->...", xs, w)


@lru_cache(maxsize=128)
def _weights(a: float, m: int) -> tuple[float, np.ndarray]:
    """a^m, and a^(m-1) … a^0 laid out in that order in memory: einsum's loop for two contiguous
    operands sums in SIMD lanes, about twice as fast as over a reversed view (a backtest's
    screen spends most of its indicator time here), and in an order that depends only on the
    length, not on where a window starts in memory (for contiguous windows: ``_last`` copies a
    strided one first): still the same value alone or among thousands."""
    p = _powers(a, m + 1)
    w = np.ascontiguousarray(p[m - 1::-1])
    w.setflags(write=False)  # shared by every caller (cached)
    return float(p[m]), w


def _seed(x: np.ndarray, period: int):
    """The mean of each window's first ``period`` values: numpy's mean is this sum and one
    division, and its bookkeeping cost more than the sum (a backtest asks a hundred thousand
    times)."""
    return np.add.reduce(x[..., :period], axis=-1) / period  # (what ``sum`` calls)


def _nan(x: np.ndarray):
    return np.full(x.shape[:-1], np.nan) if x.ndim > 1 else float("nan")


def _out(v):
    return float(v) if np.ndim(v) == 0 else v


def ema_last(x: np.ndarray, period: int):
    x = np.asarray(x, dtype=float)
    if x.shape[-1] < period:
        return _nan(x)
    k = 2.0 / (period + 1)
    return _out(_last(x, _seed(x, period), period - 1, 1.0 - k, k))


def _wilder_last(x: np.ndarray, period: int):
    """Wilder's average, seeded by the mean of the first ``period`` values."""
    return _last(x, _seed(x, period), period - 1, 1.0 - 1.0 / period, 1.0 / period)


# The moves between candles (gains, losses, true ranges, directional moves) are one fewer than the
# candles. The public functions compute them from a window; the backtest computes them once for
# its whole history and hands in windows of them (``*_from_moves``): the same arithmetic.
def moves(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    h, l, c = (np.asarray(a, dtype=float) for a in (high, low, close))
    d = np.diff(c, axis=-1)
    prev = c[..., :-1]
    up, down = np.diff(h, axis=-1), -np.diff(l, axis=-1)
    return {"gain": np.where(d > 0, d, 0.0), "loss": np.where(d < 0, -d, 0.0),
            "tr": np.maximum(h[..., 1:] - l[..., 1:],
                             np.maximum(np.abs(h[..., 1:] - prev), np.abs(l[..., 1:] - prev))),
            "pdm": np.where((up > down) & (up > 0), up, 0.0),
            "mdm": np.where((down > up) & (down > 0), down, 0.0)}


def rsi_from_moves(gain: np.ndarray, loss: np.ndarray, period: int = 14):
    if gain.shape[-1] < period:
        return _nan(gain)
    ag, al = _wilder_last(gain, period), _wilder_last(loss, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.where(al == 0, np.where(ag == 0, 50.0, 100.0),
                             100.0 - 100.0 / (1.0 + ag / al)))


def atr_from_moves(tr: np.ndarray, period: int = 14):
    return _nan(tr) if tr.shape[-1] < period else _out(_wilder_last(tr, period))


RUN_BLOCK = 31  # moves summed one after another before a block's total is carried on
MANY_ROWS = 64  # windows from which their sums are added across all of them at once


def _running_sums(x: np.ndarray) -> None:
    """Running sums along the last axis, in place, in one order whatever the number of windows:
    one after another within blocks of ``RUN_BLOCK``, then each block plus the total of those
    before it. numpy's ``cumsum`` along a row is a chain of dependent additions (3.5 ns each, a
    third of a backtest's ADX); for many windows the same additions go column by column across
    all of them at once, which gives the same numbers to the last bit."""
    n = x.shape[-1]
    full = n - n % RUN_BLOCK
    z = x[..., :full].reshape(x.shape[:-1] + (full // RUN_BLOCK, RUN_BLOCK))
    tail = x[..., full:]
    many = x.ndim > 1 and x.size >= MANY_ROWS * n
    for part in (z, tail):
        if many:
            for j in range(1, part.shape[-1]):
                part[..., j] += part[..., j - 1]
        elif part.shape[-1]:
            np.cumsum(part, axis=-1, out=part)
    if not full:
        return
    before = np.cumsum(z[..., -1], axis=-1)  # the total at each block's end (the same additions)
    z[..., 1:, :] += before[..., :-1, None]
    tail += before[..., -1:]


def adx_from_moves(pdm: np.ndarray, mdm: np.ndarray, period: int = 14):
    """ADX at the end of each window of directional moves."""
    if pdm.shape[-1] < 2 * period - 1:
        return _nan(pdm)
    k = period - 1
    p, m = pdm[..., k:], mdm[..., k:]
    return adx_from_parts(pdm[..., :k], mdm[..., :k], np.subtract(p, m), np.add(p, m), period)


def adx_from_parts(p_head: np.ndarray, m_head: np.ndarray, diff: np.ndarray, total: np.ndarray,
                   period: int = 14):
    """ADX from each window's first ``period`` − 1 directional moves (``p_head``, ``m_head``)
    and, for the moves after them, +DM − −DM (``diff``) and +DM + −DM (``total``), which are
    worked on in place: a backtest takes them for a whole block of windows at once from the
    moves' own differences and sums, the same numbers as ``adx_from_moves`` makes per window.

    TA-Lib's Wilder sums of +DM and −DM share their decay, and DX is a ratio of the two, so the
    decay cancels: DX comes from the undecayed running sums (a scaled cumulative sum over the
    window, seeded with the sum of the first period − 1 moves), their difference and their
    total."""
    grow = _powers(period / (period - 1), diff.shape[-1] + 1)[1:]  # 1 / decay^t
    p_seed, m_seed = p_head.sum(axis=-1), m_head.sum(axis=-1)
    # in place: a backtest runs this on millions of windows (the same arithmetic, fewer buffers)
    diff *= grow
    _running_sums(diff)
    diff += np.expand_dims(p_seed - m_seed, -1)
    total *= grow
    _running_sums(total)
    total += np.expand_dims(p_seed + m_seed, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # = 100·|+DI − −DI| / (+DI + −DI): TR cancels; no movement at all counts as 0
        dx = np.abs(diff, out=diff)
        dx *= 100
        dx /= total
    np.copyto(dx, 0.0, where=~(total > 0))
    # dx[0] is the first DX (2·period − 2 moves in); ADX is seeded with the mean of period DX
    return _out(_last(dx, _seed(dx, period), period - 1, (period - 1) / period, 1.0 / period))


def rsi_last(close: np.ndarray, period: int = 14):
    d = np.diff(np.asarray(close, dtype=float), axis=-1)
    return rsi_from_moves(np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0), period)


def atr_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14):
    return atr_from_moves(moves(high, low, close)["tr"], period)


def adx_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14):
    m = moves(high, low, close)
    return adx_from_moves(m["pdm"], m["mdm"], period)
