"""Booking a closed trade from the exchange's own fills.

A trade's exit price, size, fees, reason and R must add up, everywhere (History, the backtest's
trades.csv, the postmortems the AI learns from). So nothing here is estimated: the fills of the
position's own orders (matched by the client-id token shared by its entry and brackets) give the
entry and exit prices and the fees, the order that closed it gives the reason, and

    pnl = side × (exit − entry) × qty − fees + funding

holds for every record by construction. The live loop, paper mode and the backtest all book
through ``book_trade``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mraster.domain import Side
from mraster.execution import ids

LIQUIDATION_PREFIXES = ("autoclose", "adl_autoclose")


@dataclass(frozen=True)
class Fill:
    """One execution, joined with the client id and type of the order it belongs to."""
    trade_id: int  # the exchange numbers a symbol's trades in the order they happened
    order_id: int
    client_id: str
    side: Side
    price: float
    qty: float
    fee: float
    time: int
    order_type: str = ""

    @property
    def kind(self) -> str | None:
        """The bot's order kind (E, S, T2, X1 ...) or None for an order the bot did not place."""
        parsed = ids.parse(self.client_id)
        return parsed[0] if parsed else None

    @property
    def token(self) -> str | None:
        parsed = ids.parse(self.client_id)
        return parsed[1] if parsed else None


def join_fills(trades: Iterable[dict[str, Any]], orders: Iterable[dict[str, Any]]) -> list[Fill]:
    """``userTrades`` rows joined with ``allOrders`` rows by order id, oldest first. A fill whose
    order is no longer listed keeps an empty client id (it is then nobody's in particular)."""
    by_id = {int(o["orderId"]): o for o in orders}
    out = []
    for t in trades:
        o = by_id.get(int(t["orderId"]), {})
        out.append(Fill(trade_id=int(t["id"]), order_id=int(t["orderId"]), client_id=str(o.get("clientOrderId") or ""),
                        side=Side(t["side"]), price=float(t["price"]), qty=float(t["qty"]),
                        fee=float(t["commission"]), time=int(t["time"]),
                        order_type=str(o.get("origType") or o.get("type") or "")))
    out.sort(key=lambda f: f.trade_id)
    return out


def exit_reason_of(fill: Fill, guard_reason: str | None = None) -> str:
    """Why a position closed, from the order that closed it."""
    kind = fill.kind
    if kind is not None:
        if kind.startswith("S"):
            return "stop"
        if kind.startswith("T"):
            return "take_profit"
        if ids.close_kind(kind) == "X1":
            return "manual"  # the user's close through the dashboard (any attempt or piece)
        if kind.startswith("X"):
            return guard_reason or "stop"  # the guard closed it (price passed a bracket)
        return "unknown"
    if fill.client_id.startswith(LIQUIDATION_PREFIXES) or fill.order_type == "LIQUIDATION":
        return "liquidation"
    return "manual"  # an order placed by hand on the exchange


def position_fills(fills: list[Fill], token: str, side: Side,
                   qty_hint: float) -> tuple[list[Fill], list[Fill]]:
    """(entry fills, exit fills) of the position ``token``: its own entry order's fills, then
    every opposite-side fill after them up to the size that was open. On a one-way account any
    opposite fill reduces the symbol's one position, whoever placed it: its own bracket, a
    bracket left from an earlier position at the same level, a close by hand, a liquidation."""
    entries = [f for f in fills if f.token == token and f.kind == "E"]
    opened = sum(f.qty for f in entries) or qty_hint
    after = entries[0].trade_id if entries else -1
    exits: list[Fill] = []
    left = opened
    for f in fills:
        if left <= opened * 1e-9:
            break
        if f.side != side and f.trade_id > after and f.kind != "E":
            exits.append(f)
            left -= f.qty
    return entries, exits


@dataclass(frozen=True)
class Booking:
    qty: float
    entry: float
    exit: float | None
    gross: float
    fees: float
    funding: float
    pnl: float
    r: float
    reason: str
    closed_at: int | None


def book_trade(side: Side, entries: list[Fill], exits: list[Fill], *, entry_hint: float,
               qty_hint: float, initial_stop: float, funding: float,
               guard_reason: str | None = None) -> Booking:
    """The trade's numbers from its fills. ``entry_hint``/``qty_hint`` stand in for an entry
    whose fills are no longer listed by the exchange (a position adopted long after it opened).
    With no exit fill at all the reason is ``unknown`` and the pnl only fees and funding."""
    d = side.sign
    e_qty = sum(f.qty for f in entries)
    entry = sum(f.price * f.qty for f in entries) / e_qty if e_qty else entry_hint
    x_qty = sum(f.qty for f in exits)
    exit_price = sum(f.price * f.qty for f in exits) / x_qty if x_qty else None
    qty = x_qty if x_qty else (e_qty or qty_hint)
    fees = sum(f.fee for f in entries) + sum(f.fee for f in exits)
    gross = d * (exit_price - entry) * qty if exit_price is not None else 0.0
    pnl = gross - fees + funding
    risk = abs(entry - initial_stop) * qty
    reason = exit_reason_of(exits[-1], guard_reason) if exits else "unknown"
    return Booking(qty=qty, entry=entry, exit=exit_price, gross=gross, fees=fees, funding=funding,
                   pnl=pnl, r=pnl / risk if risk > 0 else 0.0, reason=reason,
                   closed_at=exits[-1].time if exits else None)
