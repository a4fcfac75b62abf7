"""ParameterTuner: size bias per policy bucket and stop / target biases from trade outcomes.

Rules, over the last ``WINDOW`` trades: a bucket's size bias is 1 + 0.15 × its average R, between
0.5 and 1 (the tuner may shrink a bucket that loses, never grow one past the user's risk); the stop
bias tightens (down to 0.8) when the average loss runs past 0.7 R; the target bias moves between 0.8
and 1.3 with how often take-profits are reached. Each bias is applied in proportion to the evidence
(confidence = trades / 40, at most 1). Once ``ASTER_AI_TUNER_MIN_TRADES`` trades exist and an LLM is
configured, it is asked (at most every ``LLM_EVERY_MS``) for suggestions that are clamped to the same
ranges and logged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from mraster.ai.answers import Suggestion

WINDOW = 90
LLM_EVERY_MS = 30 * 60_000
SIZE_RANGE, SL_RANGE, TP_RANGE = (0.5, 1.0), (0.8, 1.0), (0.8, 1.3)
NEUTRAL = {"size_bias": {"S": 1.0, "M": 1.0, "L": 1.0}, "sl_bias": 1.0, "tp_bias": 1.0,
           "confidence": 0.0, "trades": 0, "source": "rules"}

SYSTEM = ("You tune a crypto futures bot from its recent trades. Reply with one JSON object: "
          "{\"size_bias\": {\"S\": n, \"M\": n, \"L\": n} (0.5..1), \"sl_bias\": n (0.8..1), "
          "\"tp_bias\": n (0.8..1.3), \"note\": string of at most 40 words}.")


def _clamp(x: float, lo_hi: tuple[float, float]) -> float:
    return round(min(max(float(x), lo_hi[0]), lo_hi[1]), 4)


def tune(trades: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Biases from ``trades`` (each with ``r``, ``bucket`` and ``reason``), oldest first."""
    recent = list(trades)[-WINDOW:]
    if not recent:
        return dict(NEUTRAL)
    conf = min(len(recent) / 40, 1.0)

    def toward(x: float) -> float:  # the bias, weighted by the evidence behind it
        return 1 + (x - 1) * conf
    size = {}
    for b in ("S", "M", "L"):
        rs = [t["r"] for t in recent if t.get("bucket") == b]
        size[b] = _clamp(toward(1 + 0.15 * sum(rs) / len(rs)), SIZE_RANGE) if len(rs) >= 3 else 1.0
    losses = [t["r"] for t in recent if t["r"] < 0]
    avg_loss = abs(sum(losses) / len(losses)) if losses else 0.0
    tp_rate = sum(t.get("reason") == "take_profit" for t in recent) / len(recent)
    return {"size_bias": size,
            "sl_bias": _clamp(toward(1 - max(0.0, avg_loss - 0.7) * 0.18), SL_RANGE),
            "tp_bias": _clamp(toward(0.8 + tp_rate), TP_RANGE),
            "confidence": round(conf, 3), "trades": len(recent), "source": "rules"}


def bounded(s: Suggestion) -> dict[str, Any]:
    """An LLM suggestion inside the tuner's ranges."""
    return {"size_bias": {b: _clamp(s.size_bias.get(b, 1.0), SIZE_RANGE) for b in ("S", "M", "L")},
            "sl_bias": _clamp(s.sl_bias, SL_RANGE), "tp_bias": _clamp(s.tp_bias, TP_RANGE),
            "note": s.note}
