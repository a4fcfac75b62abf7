"""PostmortemLearning: every closed trade gets a review, distilled into numbers per symbol.

The rule-based review scores the outcome (tanh of the R multiple), flags a quick stop-out (the entry
came late or the stop sat inside the noise) and writes a one-line lesson. With an LLM, its score
(−1..1) is blended in and its lesson replaces the rule's. Per symbol the scores are exponentially
weighted (``DECAY``), so the last trades count most; ``edge`` feeds the bandit (feature
``pm_edge``) and, with the lesson, the advisor's next payload for that symbol.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from pydantic import BaseModel, Field

DECAY = 0.8          # weight of the previous value in the per-symbol averages
QUICK_MINUTES = 15   # a stop-out sooner than this counts as a quick one

SYSTEM = ("You review one closed crypto perpetual-futures trade of a risk-managed bot. Reply with "
          "one JSON object: {\"score\": number -1..1 (how good the decision was, not just the "
          "outcome), \"lesson\": string of at most 30 words for the next trade on this symbol}.")


class Review(BaseModel):
    score: float = Field(ge=-1, le=1)
    lesson: str = Field(max_length=400)


def rule_review(trade: Mapping[str, Any]) -> dict[str, Any]:
    """The review of one history record (see ``Engine._record_close``)."""
    r = float(trade.get("r") or 0.0)
    minutes = max(0.0, (trade.get("closed_at", 0) - trade.get("opened_at", 0)) / 60_000)
    reason = trade.get("reason", "closed")
    quick_stop = reason == "stop" and minutes < QUICK_MINUTES
    if quick_stop:
        lesson = (f"stopped out after {minutes:.0f} min: the entry came late in the move or the "
                  "stop sat inside the noise")
    elif reason == "stop":
        lesson = f"stopped out after {minutes:.0f} min at {r:+.2f} R: the setup failed"
    elif reason == "take_profit":
        lesson = f"take-profit reached after {minutes:.0f} min at {r:+.2f} R: the setup worked"
    elif reason == "manual":
        lesson = f"closed by hand at {r:+.2f} R"
    else:
        lesson = f"closed ({reason}) at {r:+.2f} R after {minutes:.0f} min"
    return {"symbol": trade.get("symbol"), "closed_at": trade.get("closed_at"), "r": r,
            "score": round(math.tanh(r / 1.5), 4), "quick_stop": quick_stop, "lesson": lesson,
            "source": "rules"}


def with_llm(review: dict[str, Any], llm: Review) -> dict[str, Any]:
    """The LLM's view blended with the rules' (half each), its lesson kept."""
    return {**review, "score": round((review["score"] + llm.score) / 2, 4), "lesson": llm.lesson,
            "source": "ai"}


def learn(book: dict[str, Any], review: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a review into the symbol's persistent features."""
    e = book.get(review["symbol"]) or {"edge": 0.0, "quick_stop_rate": 0.0, "trades": 0}
    e = {"edge": round(DECAY * e["edge"] + (1 - DECAY) * review["score"], 4),
         "quick_stop_rate": round(DECAY * e["quick_stop_rate"]
                                  + (1 - DECAY) * float(review["quick_stop"]), 4),
         "trades": e["trades"] + 1, "lesson": review["lesson"], "source": review["source"]}
    book[review["symbol"]] = e
    return e


def features(book: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    """What the advisor and the bandit get for ``symbol`` (zeros before its first trade)."""
    e = book.get(symbol)
    if not e:
        return {"edge": 0.0, "quick_stop_rate": 0.0, "trades": 0, "lesson": None}
    return {k: e[k] for k in ("edge", "quick_stop_rate", "trades", "lesson")}
