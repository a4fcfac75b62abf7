"""PostmortemLearning: every closed trade gets a review, distilled into numbers per symbol.

The rule-based review scores the outcome (tanh of the R multiple), flags a quick stop-out (the entry
came late or the stop sat inside the noise) and writes a one-line lesson. With an LLM, its score
(−1..1) is blended in and its lesson replaces the rule's. Per symbol the scores are exponentially
weighted (``DECAY``), so the last trades count most; ``edge`` feeds the bandit (feature
``pm_edge``) and, with the lesson, the advisor's next payload for that symbol.

Each review also measures the trade (``measure``) from its fills and the candles it lived through;
per symbol these become the numeric features of ``NUMERIC`` (averaged the same way), which the
advisor sees in full and the bandit as ``pm_mae``, ``pm_exit_eff`` and ``pm_slippage``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from mraster.words import Fixed, words

if TYPE_CHECKING:
    from mraster.ai.answers import Review

DECAY = 0.8          # weight of the previous value in the per-symbol averages
# the measured features, averaged per symbol (name: what it is)
NUMERIC = {
    "mae_r": "worst excursion against the trade, in R (from the candles it lived through)",
    "mfe_r": "best excursion in its favour, in R",
    "minutes_to_mae": "minutes from entry to the worst point",
    "minutes_held": "minutes from entry to exit",
    "exit_efficiency": "R taken ÷ best R seen (1 = sold the top; negative = a winner given back)",
    "slippage_bps": "entry fill against the quote the decision saw, in basis points (+ = worse)",
    "fees_r": "fees paid, in R",
    "funding_r": "funding received (+) or paid (−), in R",
    "stop_rate": "share of trades that ended at the stop (any stop rule)",
    "tp_rate": "share of trades that reached the take-profit",
    "stop_minutes": "minutes to a stop-out, for trades that were stopped",
}
QUICK_MINUTES = 15   # a stop-out sooner than this counts as a quick one

SYSTEM = ("You review one closed crypto perpetual-futures trade of a risk-managed bot. Reply with "
          "one JSON object: {\"score\": number -1..1 (how good the decision was, not just the "
          "outcome), \"lesson\": string of at most 30 words for the next trade on this symbol}.")


def measure(trade: Mapping[str, Any], candles: Any = None, quote: float | None = None
            ) -> dict[str, Any]:
    """The trade's numbers: excursions from ``candles`` (closed signal candles with ``t``, ``h``,
    ``l``; those between entry and exit count), slippage against ``quote`` (the price the
    decision saw), fees and funding in R, and the hour of day it opened (UTC)."""
    entry, stop, qty = float(trade["entry"]), float(trade["initial_stop"]), float(trade["qty"])
    d = 1 if trade["side"] == "BUY" else -1
    risk = abs(entry - stop)
    opened, closed = int(trade["opened_at"]), int(trade["closed_at"])
    out: dict[str, Any] = {"minutes_held": round((closed - opened) / 60_000, 2),
                           "hour": int(opened // 3_600_000 % 24)}
    if risk > 0 and qty > 0:
        out["fees_r"] = round(float(trade.get("fees") or 0) / (risk * qty), 4)
        out["funding_r"] = round(float(trade.get("funding") or 0) / (risk * qty), 4)
    if quote:
        out["slippage_bps"] = round(d * (entry - quote) / quote * 1e4, 3)
    if candles is not None and risk > 0 and len(candles.t):
        iv = int(candles.t[1] - candles.t[0]) if len(candles.t) > 1 else 300_000
        inside = [(int(t), float(h), float(lo)) for t, h, lo in zip(candles.t, candles.h, candles.l)
                  if opened - iv < t < closed]  # every candle that overlaps the trade
        if inside:
            worst = min(inside, key=lambda x: d * ((x[2] if d > 0 else x[1]) - entry))
            best = max(d * ((h if d > 0 else lo) - entry) for _, h, lo in inside)
            adverse = -d * ((worst[2] if d > 0 else worst[1]) - entry)
            out["mae_r"] = round(max(0.0, adverse) / risk, 4)
            out["mfe_r"] = round(max(0.0, best) / risk, 4)
            out["minutes_to_mae"] = round(max(0, worst[0] - opened) / 60_000, 2)
            if out["mfe_r"] > 0:
                out["exit_efficiency"] = round(min(1.0, max(-1.0, float(trade.get("r") or 0)
                                                             / out["mfe_r"])), 4)
    return out


def rule_review(trade: Mapping[str, Any], measured: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """The review of one history record (see ``Engine._record_close``) with its measurements."""
    r = float(trade.get("r") or 0.0)
    minutes = max(0.0, (trade.get("closed_at", 0) - trade.get("opened_at", 0)) / 60_000)
    reason = trade.get("reason", "closed")
    quick_stop = reason == "stop" and minutes < QUICK_MINUTES
    mins, rr = round(minutes), Fixed(r, signed=True)
    if quick_stop:
        lesson = words("stopped out after {minutes} min: the entry came late in the move or the "
                       "stop sat inside the noise", minutes=mins)
    elif reason == "stop":
        lesson = words("stopped out after {minutes} min at {r} R: the setup failed",
                       minutes=mins, r=rr)
    elif reason == "take_profit":
        lesson = words("take-profit reached after {minutes} min at {r} R: the setup worked",
                       minutes=mins, r=rr)
    elif reason == "manual":
        lesson = words("closed by hand at {r} R", r=rr)
    else:
        lesson = words("closed ({reason}) at {r} R after {minutes} min", reason=reason, r=rr,
                       minutes=mins)
    m = dict(measured or {})
    regime = m.pop("regime", None) or trade.get("regime")
    m.update(stop_rate=float("stop" in reason), tp_rate=float(reason == "take_profit"))
    if "stop" in reason:
        m["stop_minutes"] = round(minutes, 2)
    return {"symbol": trade.get("symbol"), "closed_at": trade.get("closed_at"), "r": r,
            "score": round(math.tanh(r / 1.5), 4), "quick_stop": quick_stop,
            "lesson": str(lesson), "lesson_words": lesson.to_dict(),  # the page's language
            "source": "rules", "measured": m, "regime": regime}


def with_llm(review: dict[str, Any], llm: Review) -> dict[str, Any]:
    """The LLM's view blended with the rules' (half each), its lesson kept."""
    return {**review, "score": round((review["score"] + llm.score) / 2, 4), "lesson": llm.lesson,
            "lesson_words": None, "source": "ai"}


def learn(book: dict[str, Any], review: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a review into the symbol's persistent features."""
    e = book.get(review["symbol"]) or {"edge": 0.0, "quick_stop_rate": 0.0, "trades": 0}
    out = {"edge": round(DECAY * e["edge"] + (1 - DECAY) * review["score"], 4),
           "quick_stop_rate": round(DECAY * e["quick_stop_rate"]
                                    + (1 - DECAY) * float(review["quick_stop"]), 4),
           "trades": e["trades"] + 1, "lesson": review["lesson"],
           "lesson_words": review.get("lesson_words"), "source": review["source"]}
    for k in NUMERIC:  # a measure seen for the first time starts at its value
        v = (review.get("measured") or {}).get(k)
        old = e.get(k)
        out[k] = old if v is None else round(v if old is None else DECAY * old + (1 - DECAY) * v, 4)
    out["last_regime"] = review.get("regime") or e.get("last_regime")
    out["last_hour"] = (review.get("measured") or {}).get("hour", e.get("last_hour"))
    book[review["symbol"]] = out
    return out


def features(book: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    """What the advisor and the bandit get for ``symbol`` (zeros before its first trade)."""
    e = book.get(symbol) or {}
    base = {"edge": 0.0, "quick_stop_rate": 0.0, "trades": 0, "lesson": None}
    return {**base, **{k: e[k] for k in base if k in e},
            **{k: e.get(k) for k in (*NUMERIC, "last_regime", "last_hour")}}


def policy_inputs(book: Mapping[str, Any], symbol: str) -> dict[str, float | None]:
    """The postmortem features the bandit sees (None before the symbol's first measured trade:
    the policy then counts them as missing)."""
    e = book.get(symbol) or {}
    return {"pm_edge": e.get("edge", 0.0), "pm_mae": e.get("mae_r"),
            "pm_exit_eff": e.get("exit_efficiency"), "pm_slippage": e.get("slippage_bps")}
