"""The sentinel's market watch: unusual funding rates and volatility spikes, as notices.

Pure functions over numbers the bot already has each cycle (the premium index's funding rate, the
closed signal candles); the engine keeps the small per-symbol history and says each episode once.
Robust statistics (median and MAD) so one wild value does not hide the next: a rate is unusual
when it sits ``z`` robust deviations from the symbol's own recent rates or from the rest of the
market right now, and is large enough to matter; a candle is a spike when its range is ``mult``
times the median range of the candles before it.
"""
from __future__ import annotations

from bisect import bisect_left
from statistics import median
from typing import Any, Sequence

from mraster.words import Words, words

FUNDING_FLOOR = 0.0003     # 0.03 % per 8 h: below this no rate is worth a notice
FUNDING_SCALE_MIN = 0.00005  # the least spread assumed, so a flat history is not "infinitely" calm
MIN_OWN, MIN_MARKET = 8, 5  # samples needed before a comparison counts
SPIKE_LOOKBACK = 48        # candles whose ranges make "usual" (4 h of 5m candles)
SPIKE_MIN_RANGE = 0.004    # a range under 0.4 % is never a spike, whatever the ratio
FUNDING_PERIODS_PER_DAY = 3


def _z(x: float, sample: Sequence[float]) -> tuple[float, float]:
    """(robust z of ``x`` against ``sample``, the sample's median)."""
    med = median(sample)
    mad = median(abs(v - med) for v in sample)
    return (x - med) / max(1.4826 * mad, FUNDING_SCALE_MIN), med


class RestOfMarket:
    """Every symbol's funding rate now, sorted once, to judge each rate against the *others*:
    the median and MAD of all rates but one are read off the sorted rates (and the sorted
    deviations around that median, kept per median: there are at most three), so a cycle
    costs O(n log n) instead of sorting the other n − 1 rates for each of n symbols. Equal,
    bit for bit, to ``_z(x, others)``: the same values in the same order, the same sums."""

    def __init__(self, rates: Sequence[float]) -> None:
        self._rates = sorted(rates)
        self._devs: dict[float, list[float]] = {}

    def __len__(self) -> int:
        """How many rates the others are (one of the rates is the symbol's own)."""
        return max(0, len(self._rates) - 1)

    def z(self, x: float) -> tuple[float, float]:
        """(robust z of ``x`` against the rates but one equal to ``x``, their median)."""
        med = _median_without(self._rates, x)
        devs = self._devs.get(med)
        if devs is None:
            devs = self._devs[med] = sorted(abs(v - med) for v in self._rates)
        mad = _median_without(devs, abs(x - med))
        return (x - med) / max(1.4826 * mad, FUNDING_SCALE_MIN), med


def _median_without(ordered: list[float], x: float) -> float:
    """``median`` of ``ordered`` (ascending, holding ``x``) with one ``x`` taken out."""
    k = bisect_left(ordered, x)
    n = len(ordered) - 1

    def at(j: int) -> float:
        return ordered[j] if j < k else ordered[j + 1]
    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2


def funding_anomaly(rate: float, own: Sequence[float], market: Sequence[float] | RestOfMarket,
                    z_min: float) -> dict[str, Any] | None:
    """Figures when ``rate`` (per funding period) is unusual against the symbol's own recent
    rates (``own``, oldest first) or the other symbols' rates now (``market``: their rates, or
    every symbol's as a ``RestOfMarket``); else None."""
    if abs(rate) < FUNDING_FLOOR:
        return None
    out: dict[str, Any] = {"rate": rate}
    unusual = False
    if len(own) >= MIN_OWN:
        z, med = _z(rate, own)
        out.update(z_own=round(z, 2), own_median=med, change=rate - own[-1])
        unusual |= abs(z) >= z_min
    if len(market) >= MIN_MARKET:
        z, med = market.z(rate) if isinstance(market, RestOfMarket) else _z(rate, market)
        out.update(z_market=round(z, 2), market_median=med)
        unusual |= abs(z) >= z_min
    return out if unusual else None


def funding_words(sym: str, a: dict[str, Any]) -> Words:
    """The notice: the figures (its own recent median and the market's, where known), and what
    the rate means for longs and shorts."""
    rate = a["rate"]
    return words("{symbol}: unusual funding {rate} % per period (recent median {own} %, the "
                 "market's {market} %); longs pay shorts about {daily} % of their position a day"
                 if rate > 0 else
                 "{symbol}: unusual funding {rate} % per period (recent median {own} %, the "
                 "market's {market} %); shorts pay longs about {daily} % of their position a day",
                 symbol=sym, rate=round(rate * 100, 4),
                 own=round(a["own_median"] * 100, 4) if "own_median" in a else None,
                 market=round(a["market_median"] * 100, 4) if "market_median" in a else None,
                 daily=round(abs(rate) * FUNDING_PERIODS_PER_DAY * 100, 3))


def volatility_spike(o: Sequence[float], h: Sequence[float], l: Sequence[float],
                     c: Sequence[float], mult: float) -> dict[str, Any] | None:
    """Figures when the last closed candle's range is ``mult`` times the median range of the
    ``SPIKE_LOOKBACK`` candles before it (and at least ``SPIKE_MIN_RANGE``); else None."""
    if len(c) < SPIKE_LOOKBACK + 1 or c[-1] <= 0:
        return None
    ranges = [(h[i] - l[i]) / c[i] for i in range(len(c) - SPIKE_LOOKBACK - 1, len(c)) if c[i] > 0]
    now, usual = ranges[-1], median(ranges[:-1])
    if now < SPIKE_MIN_RANGE or now < mult * max(usual, 1e-12):
        return None
    return {"range_pct": round(now * 100, 3), "usual_pct": round(usual * 100, 3),
            "ratio": round(now / max(usual, 1e-12), 1),
            "move_pct": round((c[-1] / o[-1] - 1) * 100, 3)}


def spike_words(sym: str, a: dict[str, Any]) -> Words:
    return words("{symbol}: volatility spike, a {range} % candle ({ratio}× the usual {usual} %), "
                 "closing {move} % up; stops may fill further away than usual"
                 if a["move_pct"] >= 0 else
                 "{symbol}: volatility spike, a {range} % candle ({ratio}× the usual {usual} %), "
                 "closing {move} % down; stops may fill further away than usual",
                 symbol=sym, range=round(a["range_pct"], 2), ratio=a["ratio"],
                 usual=round(a["usual_pct"], 2), move=round(abs(a["move_pct"]), 2))
