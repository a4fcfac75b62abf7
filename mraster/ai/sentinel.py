"""NewsTrendSentinel, rule-based: market shocks from 24h data become a risk label per symbol.

From the 24h ticker: volatility = (high − low) / last, trend = min(|change %| / 18, 1) and a volume
factor log10(quote volume) / 9. Event risk = clamp(1.2·volatility + 0.5·trend), at least 0.72 after a
fall of more than 9 %; hype = clamp(0.55·volume factor + 0.55·trend). Red (risk ≥ 0.9): no new
entries. Yellow (risk ≥ 0.6, or hype ≥ 0.74 with a rise of 4 % or more): size × 0.7. Green: size
unchanged — the sentinel only ever lowers risk. A warning stays for ``ASTER_AI_SENTINEL_DECAY_MINUTES``
after the last time its condition held, so a calm hour right after a crash does not clear it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

SIZE = {"green": 1.0, "yellow": 0.7, "red": 0.0}
RANK = {"green": 0, "yellow": 1, "red": 2}
LABELS = ("green", "yellow", "red")  # by rank


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def assess(ticker: Mapping[str, Any], news: Sequence[Any] = ()) -> dict[str, Any]:
    """The label for one 24h ticker row (exchange JSON) and the news items about the symbol
    (``mraster.ai.news.NewsItem``): a critical item makes it red, a warning at least yellow."""
    last = float(ticker.get("lastPrice") or 0)
    high, low = float(ticker.get("highPrice") or 0), float(ticker.get("lowPrice") or 0)
    change = float(ticker.get("priceChangePercent") or 0)
    qvol = float(ticker.get("quoteVolume") or 0)
    vol = (high - low) / last if last > 0 else 0.0
    trend = min(abs(change) / 18, 1.0)
    risk = _clamp(1.2 * vol + 0.5 * trend)
    if change < -9:
        risk = max(risk, 0.72)
    for item in news:
        risk = max(risk, 0.9 if item.severity == "critical" else 0.6 if item.severity == "warning"
                   else risk)
    hype = _clamp(0.55 * (math.log10(qvol) / 9 if qvol > 1 else 0.0) + 0.55 * trend)
    label = "red" if risk >= 0.9 else "yellow" if risk >= 0.6 or (hype >= 0.74 and change >= 4) \
        else "green"
    return {"label": label, "event_risk": round(risk, 4), "hype": round(hype, 4),
            "size_factor": SIZE[label], "change_pct": change, "volatility": round(vol, 5),
            "news": [f"{i.severity}: {i.title}" for i in news if i.severity != "info"][:3]}


def risk_of(last: np.ndarray, high: np.ndarray, low: np.ndarray, change: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Event risk and trend of many ticker rows (``assess``'s arithmetic, without news)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        vol = np.where(last > 0, (high - low) / last, 0.0)
    trend = np.minimum(np.abs(change) / 18, 1.0)
    risk = np.minimum(np.maximum(1.2 * vol + 0.5 * trend, 0.0), 1.0)
    return np.where(change < -9, np.maximum(risk, 0.72), risk), trend


def fold_all(moments: Sequence[tuple[int, Mapping[str, Any]]], decay_minutes: float
             ) -> dict[str, Any] | None:
    """``fold`` over (time, assessment) pairs, oldest first, from no label: the same label,
    with one dict built instead of one per moment (a backtest folds a decay window for every
    symbol at every step). The kept warning's fields come from the assessment that started it;
    risk and hype always from the last."""
    span = int(decay_minutes * 60_000)
    src = rank = until = since = None
    for t, a in moments:
        r = RANK[a["label"]]
        if src is not None and rank > r and until > t:
            continue  # the stronger warning holds
        since = since if src is not None and rank == r else t
        src, rank, until = a, r, (t if r == 0 else t + span)
    if src is None:
        return None
    last = moments[-1][1]
    return {**src, "since": since, "until": until, "event_risk": last["event_risk"],
            "hype": last["hype"]}


def ranks(last: np.ndarray, high: np.ndarray, low: np.ndarray, change: np.ndarray,
          qvol_at: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``RANK[assess(row)["label"]]`` for many ticker rows at once (their parsed numbers, no
    news): a backtest labels its whole history this way. The same arithmetic as ``assess``
    (log10 through ``math``, as there), so every label is the same; a test compares them.
    ``qvol_at(indices)``: the parsed quote volumes there, asked only where hype can decide."""
    risk, trend = risk_of(last, high, low, change)
    rank = np.where(risk >= 0.9, 2, np.where(risk >= 0.6, 1, 0)).astype(np.int8)
    ask = np.flatnonzero((rank == 0) & (change >= 4))  # where hype alone can make it yellow
    if len(ask):
        logq = np.array([math.log10(q) / 9 if q > 1 else 0.0 for q in qvol_at(ask).tolist()])
        hype = np.minimum(np.maximum(0.55 * logq + 0.55 * trend[ask], 0.0), 1.0)
        rank[ask[hype >= 0.74]] = 1
    return rank


def update(previous: Mapping[str, Any] | None, ticker: Mapping[str, Any], now_ms: int,
           decay_minutes: float, news: Sequence[Any] = ()) -> dict[str, Any]:
    """Today's assessment, unless an earlier, stronger warning has not faded yet."""
    return fold(previous, assess(ticker, news), now_ms, decay_minutes)


def fold(previous: Mapping[str, Any] | None, assessed: Mapping[str, Any], now_ms: int,
         decay_minutes: float) -> dict[str, Any]:
    """``update`` with the ticker already assessed (a backtest assesses each moment once)."""
    fresh = {**assessed, "since": now_ms, "until": now_ms + int(decay_minutes * 60_000)}
    if fresh["label"] == "green":
        fresh["until"] = now_ms
    if previous and RANK[previous["label"]] > RANK[fresh["label"]] and previous["until"] > now_ms:
        return {**previous, "event_risk": fresh["event_risk"], "hype": fresh["hype"]}
    if previous and previous["label"] == fresh["label"]:
        fresh["since"] = previous["since"]
    return fresh
