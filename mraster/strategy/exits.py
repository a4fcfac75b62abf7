"""Stops that lock in profit: breakeven, trailing, and FastTP's lock.

Pulling only the take-profit toward price (FastTP alone) leaves the stop where it was, so a
reversal past the pulled target still loses a full R. Each rule here proposes a stop; the tightest
wins, a stop only ever moves toward price (never back), and it always stays a safety margin away
from the current price so it does not trigger on the spot. R is measured against the initial stop,
as everywhere. A pure function: the live loop, paper mode and the backtest move stops alike, and
the bracket guard then replaces the stop order on the exchange.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from mraster.domain import Position
from mraster.strategy.fasttp import FASTTP_KEYS, fasttp_target


def locked_stop(pos: Position, price: float, s: Mapping[str, Any], *,
                fasttp_fired: bool = False) -> tuple[float, str] | None:
    """(new stop, which rule) when a rule moves the stop of ``pos`` toward ``price``; else None.
    ``price``: the side the position would exit at (bid for a long, ask for a short)."""
    d = pos.sign
    entry, atr = pos.entry, pos.atr or 0.0
    risk = abs(entry - pos.initial_stop)
    if risk <= 0 or atr <= 0:
        return None
    r = pos.r_at(price)
    offers: list[tuple[float, str]] = []
    if s["ASTER_BREAKEVEN_R"] > 0 and r >= s["ASTER_BREAKEVEN_R"]:
        offers.append((entry + d * s["ASTER_BREAKEVEN_OFFSET_R"] * risk, "breakeven"))
    if s["ASTER_TRAIL_ACTIVATION_R"] > 0 and r >= s["ASTER_TRAIL_ACTIVATION_R"]:
        offers.append((price - d * s["ASTER_TRAIL_ATR"] * atr, "trailing"))
    if fasttp_fired and s["FASTTP_LOCK_STOP"]:
        # as the original meant it: just behind price, but at least a little profit
        behind = price - d * s["FASTTP_LOCK_ATR"] * atr
        floor = entry + d * s["ASTER_BREAKEVEN_OFFSET_R"] * risk
        offers.append((max(floor, behind) if d > 0 else min(floor, behind), "fasttp"))
    if not offers:
        return None
    best = max(offers, key=lambda o: d * o[0])
    room = price - d * s["ASTER_STOP_MIN_GAP_ATR"] * atr  # never at or past the current price
    stop = min(best[0], room) if d > 0 else max(best[0], room)
    if d * (stop - pos.stop) <= 1e-12 * abs(entry):
        return None  # a stop only moves toward price
    return stop, best[1]


def exit_moves(pos: Position, snap: Any, closes: Sequence[float], now_ms: int,
               s: Mapping[str, Any]) -> tuple[float, tuple | None, tuple[float, str] | None]:
    """What managing ``pos`` would do now, without doing it: the price it would exit at (from
    ``snap``'s bid or ask), FastTP's new take-profit and facts (None: FastTP does not act) and
    the locked stop's move (None: the stop stays). The engine applies them each cycle; a
    backtest's held steps ask whether anything would move (``backtest.held``)."""
    price = snap.bid if pos.sign > 0 else snap.ask
    if pos.fasttp:  # the AI plan's overrides (clamped when the plan arrived)
        s = {**s, **{FASTTP_KEYS[k]: v for k, v in pos.fasttp.items()}}
    hit = fasttp_target(pos, price, closes, now_ms, s)
    return price, hit, locked_stop(pos, price, s, fasttp_fired=hit is not None)
