"""Verified protection: what the exchange really holds for a position, against what the bot
believes.

The bracket guard repairs; this module only looks. Per position it reads the open orders of its
symbol back from the exchange and says what it found — the stop and the take-profit as they are
on the exchange — and every disagreement: a bracket missing, at the wrong price, on the wrong side,
for the wrong quantity, a bracket left from another position, or an order the bot did not place.
Pure: the engine does the I/O and keeps the ledger (``Engine._verify_protection``).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from mraster.domain import Position
from mraster.exchange.rules import SymbolRules, bracket_rounding
from mraster.execution import ids
from mraster.words import Words, words


@dataclass(frozen=True)
class Finding:
    kind: str      # missing | wrong_price | wrong_side | wrong_qty | stale_bracket | foreign_order
    bracket: str | None  # stop | tp (None for an order that is no bracket of this position)
    said: Words    # the sentence: ``detail`` in English, its words for the reader's language
    client_id: str = ""

    @property
    def detail(self) -> str:
        return str(self.said)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "bracket": self.bracket, "detail": self.detail,
                "words": self.said.to_dict(), "client_id": self.client_id}


def _kind(bracket: str | None) -> Words:
    return words("take-profit" if bracket == "tp" else "stop")


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
            findings.append(Finding("foreign_order", kind, words(
                "{symbol}: an order the bot did not place is open ({order})", symbol=sym,
                order=what), cid))
            continue
        if kind is None:
            continue  # the bot's own entry or close in flight: not a bracket
        if parsed[1] != pos.token:
            findings.append(Finding("stale_bracket", kind, words(
                "{symbol}: a {kind} of another position of the bot is still open ({order})",
                symbol=sym, kind=_kind(kind), order=what), cid))
            continue
        seen[kind] = cid
        price = Decimal(str(o.get("stopPrice") or "0"))
        found[kind] = float(price)
        if o.get("side") != close_side:
            findings.append(Finding("wrong_side", kind, words(
                "{symbol}: the {kind} would {side} instead of {close_side} ({order})", symbol=sym,
                kind=_kind(kind), side=o.get("side"), close_side=close_side, order=what), cid))
        elif price != want[kind]:
            findings.append(Finding("wrong_price", kind, words(
                "{symbol}: the {kind} sits at {price}, the bot's level is {level}", symbol=sym,
                kind=_kind(kind), price=float(price), level=float(want[kind])), cid))
        elif o.get("closePosition") not in (True, "true") and \
                Decimal(str(o.get("origQty") or "0")) < Decimal(str(abs(amount))):
            findings.append(Finding("wrong_qty", kind, words(
                "{symbol}: the {kind} covers {qty} of a {amount} position", symbol=sym,
                kind=_kind(kind), qty=float(o.get("origQty") or 0), amount=abs(amount)), cid))
    for kind in ("stop", "tp"):
        if kind not in seen:
            findings.append(Finding("missing", kind, words(
                "{symbol}: no {kind} of the bot on the exchange", symbol=sym, kind=_kind(kind))))
    return Verification(found["stop"], found["tp"], tuple(findings), seen)


def at_risk(pos: Position, fee_rate: float, funding: float) -> float:
    """What the position loses if its stop fills now: the move to the stop, the fees of entry
    and exit, less the funding received so far (negative: the stop locks in a profit)."""
    loss = pos.sign * (pos.entry - pos.stop) * pos.qty
    fees = (pos.entry + pos.stop) * pos.qty * fee_rate
    return round(loss + fees - funding, 8)
