"""FastTP: take a winning trade's profit before a reversal gives it back.

Once a position is at least ``FASTTP_MIN_R`` in profit (R against the initial stop) and the last
closed candle moved against it by ``FAST_TP_RET1`` or the last three by ``FAST_TP_RET3``, the
take-profit is pulled to price ± ``FASTTP_SNAP_ATR`` × ATR — only ever closer to price, at most once
per ``FASTTP_COOLDOWN_S``. A pure function, so the live loop and any replay decide alike.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from mraster.domain import Position

# the AI plan's per-position FastTP fields and the settings they stand for
FASTTP_KEYS = {"enabled": "FAST_TP_ENABLED", "min_r": "FASTTP_MIN_R", "snap_atr": "FASTTP_SNAP_ATR"}


def fasttp_target(pos: Position, price: float, closes: Sequence[float], now_ms: int,
                  s: Mapping[str, Any]) -> tuple[float, dict[str, float]] | None:
    """(new take-profit, facts for the event) or None when FastTP does not act."""
    if not s["FAST_TP_ENABLED"] or len(closes) < 4:
        return None
    if (now_ms - pos.fasttp_at) / 1000 < s["FASTTP_COOLDOWN_S"]:
        return None
    d = pos.sign
    r_now = pos.r_at(price)
    ret1 = d * (closes[-1] / closes[-2] - 1)
    ret3 = d * (closes[-1] / closes[-4] - 1)
    if r_now < s["FASTTP_MIN_R"] or not (ret1 <= s["FAST_TP_RET1"] or ret3 <= s["FAST_TP_RET3"]):
        return None
    new_tp = price + d * s["FASTTP_SNAP_ATR"] * pos.atr
    if d * (new_tp - pos.take_profit) >= 0:
        return None  # only ever pulls the target closer
    return new_tp, {"r": round(r_now, 3), "ret1": round(ret1, 5), "ret3": round(ret3, 5)}
