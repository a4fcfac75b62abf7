"""The one gate before money moves: every entry is checked here against the user's limits."""
from __future__ import annotations

from typing import Any, Collection, Mapping

from mraster.domain import Position


def entry_gate(symbol: str, open_positions: Mapping[str, Position], s: Mapping[str, Any], *,
               paused: bool = False, cooldown_until: int = 0, now_ms: int = 0,
               off_limits: Collection[str] = (), reducing: bool = False,
               locked: Collection[str] = ()) -> str | None:
    """Reason code when a new entry on ``symbol`` is not allowed now, else None.
    ``off_limits``: symbols holding a position the bot does not own (never entered, added to
    or flipped, whatever the other limits say); ``reducing``: an account-level breaker is on;
    ``locked``: symbols a per-symbol breaker locked (``mraster.protections``)."""
    if symbol in off_limits:
        return "external_position"
    if reducing:
        return "reducing"
    if symbol in locked:
        return "symbol_locked"
    if paused:
        return "paused"
    if cooldown_until > now_ms:
        return "cooldown"
    # One position of the bot per symbol at most, whatever ASTER_MAX_OPEN_PER_SYMBOL allows: the
    # exchange nets a symbol's positions into one (one-way mode) and each of the bot's stops and
    # take-profits closes all of it, so a second position there would share the first one's
    # brackets, each position's repairs would cancel the other's as stale, and the symbol was
    # left without any stop between cycles (9 cycle ends in one actively trading day at 2)
    if any(p.symbol == symbol for p in open_positions.values()):
        return "max_open_symbol"
    total = s["ASTER_MAX_OPEN_GLOBAL"]
    if total and len(open_positions) >= total:
        return "max_open_global"
    return None


def open_risk(positions: Mapping[str, Position]) -> tuple[float, float]:
    """(Σ |entry − stop| × qty, Σ entry × qty) of the positions open or being opened."""
    risk = sum(abs(p.entry - p.stop) * p.qty for p in positions.values())
    notional = sum(p.entry * p.qty for p in positions.values())
    return risk, notional


def exposure_cap(positions: Mapping[str, Position], *, risk_usdt: float, notional: float,
                 equity: float, s: Mapping[str, Any]) -> tuple[str, dict[str, float]] | None:
    """(reason, figures) when adding this entry to the open positions (including the entries
    earlier in the same cycle, which are in ``positions`` already) would cross a total cap."""
    risk_now, notional_now = open_risk(positions)
    cap = s["ASTER_MAX_OPEN_RISK"]
    if cap > 0 and risk_now + risk_usdt > cap * equity * 1.0001:
        return "open_risk_cap", {"open_risk": round(risk_now, 4), "this_risk": round(risk_usdt, 4),
                                 "cap": round(cap * equity, 4)}
    cap_x = s["ASTER_MAX_TOTAL_NOTIONAL_X"]
    if cap_x > 0 and notional_now + notional > cap_x * equity * 1.0001:
        return "notional_cap", {"open_notional": round(notional_now, 2),
                                "this_notional": round(notional, 2), "cap": round(cap_x * equity, 2)}
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
