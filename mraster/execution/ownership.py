"""Whose position is it? The exchange is the truth and the client id is the owner.

A position on the exchange belongs to the bot when the orders that opened it carry the bot's
client-id prefix, whatever the state file says (it may be lost, truncated or older than the
exchange). Anything else — a position opened by hand, by another program, or one whose history
the exchange no longer lists — is off limits: the bot never enters, adds, flips or brackets it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mraster.domain import Owner, Side
from mraster.execution import ids
from mraster.words import Words, words


@dataclass(frozen=True)
class Ownership:
    owner: Owner
    why: Words  # (the positions view and the notice say it in the reader's language)
    token: str | None = None          # the bot's position token (from its entry's client id)
    entry_client_id: str | None = None
    opened_at: int | None = None      # time of the first opening fill
    # the client ids of every order that opened or added to the current position (the bot's and
    # others'): a bot position whose entry is not among them ended before it (``includes``)
    opened_by: frozenset[str] = frozenset()

    def includes(self, entry_client_id: str) -> bool:
        """Is the position whose entry order had this id part of the symbol's current one?"""
        return entry_client_id in self.opened_by


def owner_of(amount: float, orders: Iterable[dict[str, Any]]) -> Ownership:
    """Decide from the symbol's recent orders (``allOrders`` rows) who opened the current
    position of signed size ``amount``. Orders are undone from the newest back until the size
    returns to zero (or changes sign): the orders from there on opened this position. It is the
    bot's only if every one of them that added to it was a bot entry (``mra1-E-…``)."""
    done = sorted((o for o in orders if float(o.get("executedQty") or 0) > 0),
                  key=lambda o: (int(o.get("updateTime") or o.get("time") or 0), int(o["orderId"])))
    eps = abs(amount) * 1e-9
    net = amount
    start = None
    for i in range(len(done) - 1, -1, -1):
        o = done[i]
        signed = float(o["executedQty"]) * Side(o["side"]).sign
        net -= signed
        if abs(net) <= eps or (net > 0) != (amount > 0):
            start = i
            break
    if start is None:
        return Ownership(Owner.EXTERNAL,
                         words("the exchange no longer lists the orders that opened it"))
    adders = [o for o in done[start:] if (Side(o["side"]).sign > 0) == (amount > 0)]
    parsed = [ids.parse(o.get("clientOrderId", "")) for o in adders]
    opened_by = frozenset(str(o.get("clientOrderId", "")) for o in adders)
    if not parsed or any(p is None or p[0] != "E" for p in parsed):
        return Ownership(Owner.EXTERNAL,
                         words("opened or added to by orders the bot did not place"),
                         opened_by=opened_by)
    first = adders[0]
    return Ownership(Owner.BOT, words("opened by the bot's own entry order"), token=parsed[0][1],
                     entry_client_id=first["clientOrderId"],
                     opened_at=int(first.get("updateTime") or first.get("time") or 0),
                     opened_by=opened_by)
