"""The one gate before money moves: every entry is checked here against the user's limits."""
from __future__ import annotations

from typing import Any, Collection, Mapping


def entry_gate(symbol: str, open_positions: Mapping[str, Any], s: Mapping[str, Any], *,
               paused: bool = False, cooldown_until: int = 0, now_ms: int = 0,
               off_limits: Collection[str] = ()) -> str | None:
    """Reason code when a new entry on ``symbol`` is not allowed now, else None.
    ``off_limits``: symbols holding a position the bot does not own (never entered, added to
    or flipped, whatever the other limits say)."""
    if symbol in off_limits:
        return "external_position"
    if paused:
        return "paused"
    if cooldown_until > now_ms:
        return "cooldown"
    per_symbol = s["ASTER_MAX_OPEN_PER_SYMBOL"]
    if per_symbol and sum(1 for p in open_positions.values() if p["symbol"] == symbol) >= per_symbol:
        return "max_open_symbol"
    total = s["ASTER_MAX_OPEN_GLOBAL"]
    if total and len(open_positions) >= total:
        return "max_open_global"
    return None


def check_order(*, notional: float, leverage: int, risk_usdt: float, equity: float,
                used_margin: float, s: Mapping[str, Any]) -> str | None:
    """Last check of a sized order; the sizing already respects these, this catches bugs."""
    if leverage > s["ASTER_LEVERAGE"]:
        return "risk_cap"
    if s["ASTER_MAX_NOTIONAL_USDT"] > 0 and notional > s["ASTER_MAX_NOTIONAL_USDT"] * 1.0001:
        return "risk_cap"
    if risk_usdt > equity * s["ASTER_RISK_PER_TRADE"] * 1.0001:
        return "risk_cap"
    if used_margin + notional / leverage > equity * s["ASTER_EQUITY_FRACTION"] * 1.0001:
        return "exposure"
    return None
