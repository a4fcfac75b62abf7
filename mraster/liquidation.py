"""Where a position would be liquidated, by the exchange's formula (Binance USDⓈ-M, which Aster
follows), shared by the simulator (which liquidates) and the bot (which refuses an entry whose stop
is not safely inside its liquidation price).

One-way position of size Q at entry EP, side s (+1 long, −1 short), wallet balance WB backing it
(isolated: the position's margin; crossed: the account's free balance), maintenance margin rate
MMR and maintenance amount cum from the notional's leverage bracket:

    liquidation price = (WB + cum − s × Q × EP) / (Q × MMR − s × Q)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Bracket:
    notional_cap: float
    initial_leverage: int
    mmr: float
    cum: float


# Aster's (Binance's) BTC-style tiers; the simulator serves these and the bot assumes them for a
# symbol whose brackets the exchange does not list
DEFAULT_BRACKETS = (Bracket(50_000, 125, 0.004, 0.0), Bracket(250_000, 100, 0.005, 50.0),
                    Bracket(1_000_000, 50, 0.01, 1_300.0), Bracket(5_000_000, 20, 0.025, 16_300.0),
                    Bracket(20_000_000, 10, 0.05, 141_300.0),
                    Bracket(float("inf"), 5, 0.1, 1_141_300.0))


def bracket_for(notional: float, brackets: Iterable[Bracket] = DEFAULT_BRACKETS) -> Bracket:
    tiers = sorted(brackets, key=lambda b: b.notional_cap)
    return next((b for b in tiers if abs(notional) <= b.notional_cap), tiers[-1])


def liquidation_price(sign: int, entry: float, qty: float, wallet: float,
                      brackets: Iterable[Bracket] = DEFAULT_BRACKETS) -> float:
    """The mark price at which the position is liquidated (0 when it cannot be, e.g. a long
    backed by more than its notional)."""
    q = abs(qty)
    if q <= 0:
        return 0.0
    b = bracket_for(q * entry, brackets)
    price = (wallet + b.cum - sign * q * entry) / (q * b.mmr - sign * q)
    return max(0.0, price)


def isolated_margin(entry: float, qty: float, leverage: int) -> float:
    return abs(qty) * entry / max(1, leverage)


def stop_is_safe(sign: int, entry: float, stop: float, liq: float, buffer: float) -> bool:
    """The stop triggers before the liquidation, with ``buffer`` × (entry − liquidation) to
    spare (freqtrade's ``liquidation_buffer``)."""
    if liq <= 0:
        return True
    guard = liq + sign * buffer * abs(entry - liq)
    return sign * (stop - guard) > 0


def brackets_from_api(rows: Any) -> dict[str, tuple[Bracket, ...]]:
    """``GET /fapi/v1/leverageBracket`` rows → brackets per symbol."""
    out: dict[str, tuple[Bracket, ...]] = {}
    for row in rows if isinstance(rows, list) else [rows]:
        tiers = tuple(Bracket(float(b["notionalCap"]), int(b["initialLeverage"]),
                              float(b["maintMarginRatio"]), float(b.get("cum", 0.0)))
                      for b in row.get("brackets", []))
        if tiers:
            out[str(row["symbol"])] = tiers
    return out


def brackets_to_api(symbol: str, brackets: Iterable[Bracket] = DEFAULT_BRACKETS) -> dict[str, Any]:
    floor = 0.0
    rows = []
    for i, b in enumerate(sorted(brackets, key=lambda b: b.notional_cap), start=1):
        cap = b.notional_cap if b.notional_cap != float("inf") else 1e12
        rows.append({"bracket": i, "initialLeverage": b.initial_leverage, "notionalCap": cap,
                     "notionalFloor": floor, "maintMarginRatio": b.mmr, "cum": b.cum})
        floor = cap
    return {"symbol": symbol, "brackets": rows}
