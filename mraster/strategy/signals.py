"""Signals: RSI on the signal timeframe, confirmed by the higher timeframe's trend.

Pure functions of closed candles and settings. Every rejection is a reason code, so the dashboard
can say "why not" for each symbol.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mraster.market.indicators import adx_last, atr_last, ema_last, rsi_last
from mraster.strategy.elementwise import ops
from mraster.strategy.filters import REASON_CODES, first_reason, is_side, pick, side_codes

MIN_LTF = 60
MIN_HTF = 60
LTF_WINDOW = 200  # closed candles the indicators see (signal timeframe)
HTF_WINDOW = 120  # closed candles of the higher timeframe
RSI_PERIOD, ATR_PERIOD, ADX_PERIOD = 14, 14, 14
EMA_FAST, EMA_SLOW = 21, 55  # the signal timeframe's own trend (a feature)
HTF_EMA, HTF_SLOPE_LAG = 55, 4  # the higher timeframe's trend: the slope of its EMA


@dataclass
class Candles:
    """Closed candles only (the forming one is dropped before this is built)."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray
    c: np.ndarray
    v: np.ndarray

    def __len__(self) -> int:
        return len(self.c)


@dataclass
class Features:
    """Indicator values at the last closed candle: numbers, or arrays (one entry per moment)
    in a backtest's bulk screen."""

    price: float
    rsi: float
    atr: float
    atr_pct: float
    adx: float
    ema_fast: float
    ema_slow: float
    ltf_trend: int
    htf_trend: int
    htf_slope: float
    wickiness: float
    ret1: float
    ret3: float


def features(ltf: Candles, htf: Candles) -> Features | None:
    """Indicator values at the last closed candle; None when there is not enough history."""
    if len(ltf) < MIN_LTF or len(htf) < MIN_HTF:
        return None
    c = ltf.c
    r = rsi_last(c, RSI_PERIOD)
    a = atr_last(ltf.h, ltf.l, c, ATR_PERIOD)
    x = adx_last(ltf.h, ltf.l, c, ADX_PERIOD)
    ef, es = ema_last(c, EMA_FAST), ema_last(c, EMA_SLOW)
    eh1, eh5 = ema_last(htf.c, HTF_EMA), ema_last(htf.c[:-HTF_SLOPE_LAG], HTF_EMA)  # now and 4 candles ago
    slope = eh1 / eh5 - 1 if eh5 > 0 else 0.0
    rng = ltf.h[-1] - ltf.l[-1]
    body = abs(ltf.c[-1] - ltf.o[-1])
    wick = (rng - body) / rng if rng > 0 else 0.0
    price = float(c[-1])
    return Features(price=price, rsi=float(r), atr=float(a), atr_pct=float(a / price),
                    adx=float(x), ema_fast=float(ef), ema_slow=float(es),
                    ltf_trend=1 if ef > es else -1, htf_trend=1 if slope > 0 else -1,
                    htf_slope=float(slope), wickiness=float(wick),
                    ret1=float(c[-1] / c[-2] - 1), ret3=float(c[-1] / c[-4] - 1))


SIGNAL = np.uint8(REASON_CODES.index("signal"))  # an array screen's code for "signal"


@dataclass
class Signal:
    side: str | None  # "BUY", "SELL" or None
    reason: str       # "signal" or a reason code
    win_prob: float = 0.5
    expected_r: float = 0.0


def rsi_signal(f: Features, s: Mapping[str, Any]) -> Signal:
    """RSI beyond its bound in the direction of the higher timeframe's trend. Features may hold
    arrays (many moments at once); side and reason are then arrays of codes
    (``filters.SIDE_CODES``, ``filters.REASON_CODES``)."""
    buy = (f.rsi > s["ASTER_RSI_BUY_MIN"]) & (f.htf_trend > 0)
    sell = (f.rsi < s["ASTER_RSI_SELL_MAX"]) & (f.htf_trend < 0)  # never both: SELL_MAX ≤ BUY_MIN
    if s["ASTER_TREND_BIAS"] == "against":
        buy, sell = sell, buy
    xp = ops(buy, sell)
    reason = first_reason(("no_signal", xp.logical_not(buy | sell)),
                          ("trend_misaligned", xp.logical_and(bool(s["ASTER_ALLOW_TREND_ALIGN"]),
                                                              f.ltf_trend != f.htf_trend)))
    if xp is np:
        passed = reason == 0
        return Signal(side_codes(buy, passed), np.where(passed, SIGNAL, reason))
    return Signal(("BUY" if buy else "SELL") if reason is None else None, reason or "signal")


def _direction(side: Any) -> Any:
    return pick(is_side(side, "BUY"), 1, -1)


def win_probability(f: Features, side: Any) -> Any:
    """A documented prior for P(take-profit before stop), before any learning:
    0.50, +0.05 when both timeframes agree with the side, +up to 0.05 for trend strength (ADX
    15→40), +up to 0.03 for RSI momentum in the side's direction. Bounded to [0.35, 0.65]."""
    xp = ops(f.rsi, f.adx, side)
    d = _direction(side)
    p = 0.50 + 0.05 * ((f.ltf_trend == d) & (f.htf_trend == d))
    p = p + xp.where(xp.isnan(f.adx), 0.0, 0.05 * xp.clip((f.adx - 15) / 25, 0.0, 1.0))
    p = p + 0.03 * xp.tanh(d * (f.rsi - 50) / 10)
    return xp.clip(p, 0.35, 0.65)


TAKER_FEE = 0.0004  # the fee the edge assumes for a market order, each way


def expected_r(p: Any, sl_mult: float, tp_mult: float, atr_abs: Any, price: Any,
               spread: Any, funding: Any, side: Any, fee: float = TAKER_FEE,
               hold_hours: float = 4.0) -> Any:
    """Expected R = p × reward/risk − (1 − p) − costs in R.

    Costs: taker fees on entry and exit plus the spread, and funding over an assumed holding time
    (``hold_hours``; funding settles every 8 h), each divided by the stop distance."""
    stop_dist = sl_mult * atr_abs
    xp = ops(stop_dist, p, spread, funding, side)
    rr = tp_mult / sl_mult
    cost = (2 * fee + spread) * price + xp.maximum(0.0, _direction(side) * funding) * price * \
        hold_hours / 8
    if xp is np:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(stop_dist > 0, p * rr - (1 - p) - cost / stop_dist, -np.inf)
    return p * rr - (1 - p) - cost / stop_dist if stop_dist > 0 else -math.inf
