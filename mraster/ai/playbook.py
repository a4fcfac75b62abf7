"""PlaybookManager: the market regime, plain directives and structured risk adjustments.

Rules: breadth (the share of the universe up over 24 h) and the sentinel's labels give the regime —
``shock`` when a symbol is red or a fifth of the market is yellow, ``bullish`` at breadth ≥ 0.65,
``bearish`` at ≤ 0.35, else ``mixed``. Against the regime a side's size is cut (0.7), in a shock both
(0.6), and after four or more losses in the last five trades both again (× 0.8). With an LLM, its
playbook replaces the rules' but its size factors are clamped to [0.3, 1]: the playbook only ever
lowers risk. It is refreshed every ``ASTER_AI_PLAYBOOK_REFRESH_MINUTES``, attached to every advisor
payload and shown on the dashboard.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from pydantic import BaseModel, Field

SIZE_RANGE = (0.3, 1.0)
SYSTEM = ("You keep the trading playbook of a crypto perpetual-futures bot. From the market "
          "overview reply with one JSON object: {\"regime\": one of bullish|bearish|mixed|shock, "
          "\"directives\": list of at most 4 short sentences, \"size_factor\": {\"BUY\": n, "
          "\"SELL\": n} (0.3..1, 1 = normal size), \"note\": string of at most 40 words}.")


class LLMPlaybook(BaseModel):
    regime: str = Field(pattern="^(bullish|bearish|mixed|shock)$")
    directives: list[str] = Field(default_factory=list, max_length=8)
    size_factor: dict[str, float] = Field(default_factory=dict)
    note: str = Field("", max_length=600)


def overview(market: Mapping[str, Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]],
             history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    changes = [float(m.get("change_pct") or 0) for m in market.values()]
    n = len(changes)
    last = list(history)[-5:]
    return {"symbols": n, "breadth": round(sum(c > 0 for c in changes) / n, 3) if n else 0.5,
            "median_change_pct": round(sorted(changes)[n // 2], 3) if n else 0.0,
            "red": sorted(s for s, l in labels.items() if l.get("label") == "red"),
            "yellow": sorted(s for s, l in labels.items() if l.get("label") == "yellow"),
            "recent_losses": sum(1 for t in last if (t.get("r") or 0) < 0), "recent_trades": len(last)}


def rule_playbook(ov: Mapping[str, Any]) -> dict[str, Any]:
    size = {"BUY": 1.0, "SELL": 1.0}
    directives = []
    if ov["red"] or (ov["symbols"] and len(ov["yellow"]) >= 0.2 * ov["symbols"]):
        regime = "shock"
        size = {"BUY": 0.6, "SELL": 0.6}
        directives.append("Market shock: every new position at 60 % size; red-labelled symbols "
                          "are not traded.")
    elif ov["breadth"] >= 0.65:
        regime = "bullish"
        size["SELL"] = 0.7
        directives.append(f"{ov['breadth']:.0%} of the market is up over 24 h: shorts at 70 % size.")
    elif ov["breadth"] <= 0.35:
        regime = "bearish"
        size["BUY"] = 0.7
        directives.append(f"{1 - ov['breadth']:.0%} of the market is down over 24 h: longs at "
                          "70 % size.")
    else:
        regime = "mixed"
        directives.append("No clear market direction: normal size both ways.")
    if ov["recent_trades"] >= 5 and ov["recent_losses"] >= 4:
        size = {k: round(v * 0.8, 4) for k, v in size.items()}
        directives.append(f"{ov['recent_losses']} of the last 5 trades lost: size cut by a further 20 %.")
    return {"regime": regime, "directives": directives, "size_factor": size, "source": "rules",
            "overview": dict(ov)}


def from_llm(p: LLMPlaybook, ov: Mapping[str, Any]) -> dict[str, Any]:
    lo, hi = SIZE_RANGE
    size = {k: round(min(max(float(p.size_factor.get(k, 1.0)), lo), hi), 4) for k in ("BUY", "SELL")}
    return {"regime": p.regime, "directives": [d[:300] for d in p.directives[:4]],
            "size_factor": size, "note": p.note, "source": "ai", "overview": dict(ov)}


def payload_view(pb: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part the advisor sees."""
    if not pb:
        return None
    return {k: pb[k] for k in ("regime", "directives", "size_factor")}
