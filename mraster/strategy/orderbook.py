"""Order-book context for the advisor: how much sits near the price, which side is heavier, and
what a market order of the planned size would pay. Pure; the engine fetches the book (a limited
number of levels) only for candidates the advisor is about to be asked about."""
from __future__ import annotations

from typing import Any, Sequence

BANDS = (0.005, 0.01)       # ±0.5 % and ±1 % around the mid price
IMBALANCE_LEVELS = (1, 5, 10, 20)
DEPTH_LIMIT = 50            # levels asked for (weight 2 on Aster)


def _levels(rows: Sequence[Sequence[Any]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q, *_ in rows]


def book_context(bids_raw: Sequence[Sequence[Any]], asks_raw: Sequence[Sequence[Any]], side: str,
                 qty: float) -> dict[str, Any] | None:
    """Depth within each band (base quantity and quote value per side), the imbalance
    (bid − ask) / (bid + ask) over the first N levels, and the slippage in basis points against
    the best price of a market order of ``qty`` walking the book (None when the levels fetched
    do not hold that much: ``fillable`` is then False). None for an empty book."""
    bids, asks = _levels(bids_raw), _levels(asks_raw)
    if not bids or not asks:
        return None
    mid = (bids[0][0] + asks[0][0]) / 2
    out: dict[str, Any] = {}
    for band in BANDS:
        b = [(p, q) for p, q in bids if p >= mid * (1 - band)]
        a = [(p, q) for p, q in asks if p <= mid * (1 + band)]
        out[f"depth_{band * 100:g}pct"] = {
            "bid_qty": sum(q for _, q in b), "ask_qty": sum(q for _, q in a),
            "bid_quote": round(sum(p * q for p, q in b), 6),
            "ask_quote": round(sum(p * q for p, q in a), 6)}
    out["imbalance_by_level"] = {}
    for n in IMBALANCE_LEVELS:
        if len(bids) >= n and len(asks) >= n:
            b, a = sum(q for _, q in bids[:n]), sum(q for _, q in asks[:n])
            out["imbalance_by_level"][str(n)] = round((b - a) / (b + a), 4) if b + a > 0 else None
    book = asks if side == "BUY" else bids
    left, cost = qty, 0.0
    for p, q in book:
        take = min(left, q)
        cost += take * p
        left -= take
        if left <= qty * 1e-12:
            break
    filled = left <= qty * 1e-12 and qty > 0
    best = book[0][0]
    avg = cost / qty if filled else None
    out.update(planned_qty=qty, fillable=filled,
               slippage_bps=round(abs(avg / best - 1) * 1e4, 3) if avg is not None else None)
    return out
