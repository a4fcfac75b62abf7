"""Verified protection: what the exchange really holds for a position, against what the bot
believes.

The bracket guard repairs; this module only looks. Per position it reads the open orders of its
symbol back from the exchange and says what it found — the stop and the take-profit as they are
on the exchange — and every disagreement: a bracket missing, at the wrong price, on the wrong side,
for the wrong quantity, a bracket left from another position, or an order the bot did not place.
Pure: the engine does the I/O and keeps the ledger (``Engine._verify_protection``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Iterable

from mraster.domain import Position
from mraster.exchange.rules import SymbolRules, bracket_rounding
from mraster.execution import ids

KINDS = {"stop": "stop", "tp": "take-profit"}


@dataclass(frozen=True)
class Finding:
    kind: str      # missing | wrong_price | wrong_side | wrong_qty | stale_bracket | foreign_order
    bracket: str | None  # stop | tp (None for an order that is no bracket of this position)
    detail: str
    client_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    stop: float | None   # the stop as found on the exchange (None: none of the bot's)
    tp: float | None
    findings: tuple[Finding, ...]
    seen: dict[str, str]  # bracket → client id of the order found for it

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(pos: Position, orders: Iterable[dict], rules: SymbolRules, amount: float
           ) -> Verification:
    """``orders``: the open orders of the position's symbol; ``amount``: the exchange's signed
    position size."""
    sym, close_side = pos.symbol, pos.side.opposite.value
    sl_dir, tp_dir = bracket_rounding(pos.side.value)
    want = {"stop": rules.round_price(pos.stop, sl_dir), "tp": rules.round_price(pos.take_profit, tp_dir)}
    findings: list[Finding] = []
    found: dict[str, float | None] = {"stop": None, "tp": None}
    seen: dict[str, str] = {}
    for o in orders:
        cid = o.get("clientOrderId", "")
        parsed = ids.parse(cid)
        kind = ids.bracket_kind(o)
        what = f"{o.get('type')} {o.get('side')} at {o.get('stopPrice') or o.get('price')}"
        if parsed is None:
            findings.append(Finding("foreign_order", kind, f"{sym}: an order the bot did not "
                                    f"place is open ({what})", cid))
            continue
        if kind is None:
            continue  # the bot's own entry or close in flight: not a bracket
        if parsed[1] != pos.token:
            findings.append(Finding("stale_bracket", kind, f"{sym}: a {KINDS[kind]} of another "
                                    f"position of the bot is still open ({what})", cid))
            continue
        seen[kind] = cid
        price = Decimal(str(o.get("stopPrice") or "0"))
        found[kind] = float(price)
        if o.get("side") != close_side:
            findings.append(Finding("wrong_side", kind, f"{sym}: the {KINDS[kind]} would "
                                    f"{o.get('side')} instead of {close_side} ({what})", cid))
        elif price != want[kind]:
            findings.append(Finding("wrong_price", kind, f"{sym}: the {KINDS[kind]} sits at "
                                    f"{price}, the bot's level is {want[kind]}", cid))
        elif o.get("closePosition") not in (True, "true") and \
                Decimal(str(o.get("origQty") or "0")) < Decimal(str(abs(amount))):
            findings.append(Finding("wrong_qty", kind, f"{sym}: the {KINDS[kind]} covers "
                                    f"{o.get('origQty')} of a {abs(amount):g} position", cid))
    for kind in ("stop", "tp"):
        if kind not in seen:
            findings.append(Finding("missing", kind, f"{sym}: no {KINDS[kind]} of the bot on "
                                    "the exchange"))
    return Verification(found["stop"], found["tp"], tuple(findings), seen)


def at_risk(pos: Position, fee_rate: float, funding: float) -> float:
    """What the position loses if its stop fills now: the move to the stop, the fees of entry
    and exit, less the funding received so far (negative: the stop locks in a profit)."""
    loss = pos.sign * (pos.entry - pos.stop) * pos.qty
    fees = (pos.entry + pos.stop) * pos.qty * fee_rate
    return round(loss + fees - funding, 8)
