"""The protection ledger: each cycle every open position's brackets are read back from the
exchange (the bracket guard's snapshot of open orders) and compared with what the bot believes
(``execution.protection.verify``). The position records what was found, since when it has been
protected, the money at risk at its stop, and how often it was repaired; each disagreement is a
notice until the read-back agrees again; every change of a position's protection is kept in
``state["protection_log"]`` with who made it: bot, guard, user or exchange. A mixin of ``Engine``.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from mraster.exchange import errors as E
from mraster.exchange.together import together
from mraster.execution import ids
from mraster.execution.protection import at_risk, verify
from mraster.words import Words, words

log = logging.getLogger("mraster.engine")
LOG_KEPT = 500
FUNDING_EVERY_MS = 3_600_000   # funding received or paid is read back at most hourly
DEFAULT_FEE = 0.0004           # until the exchange tells the account's own taker rate


def _funding_unread(positions: list, now: int) -> None:
    """The funding so far could not be read: each position's row says since when (its money
    at risk counts the funding last read, or none), until a read succeeds."""
    for p in positions:
        p.protection.setdefault("funding_unread_since", now)


def _price(x: Any) -> float | None:
    """A price as a number, so the page writes it in the reader's way (``9.0383e-06`` was
    written as Python formats it)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class ProtectionWatch:
    """Mixed into ``Engine``."""

    def _protection_log(self, token: str, symbol: str, who: str, what: str | Words) -> None:
        """``Words`` are kept with the entry, so the page says it in the reader's language."""
        entry = {"time": self.market_ms or self.now_ms(), "position": token, "symbol": symbol,
                 "who": who, "what": str(what)}
        if isinstance(what, Words):
            entry["words"] = what.to_dict()
        self.state["protection_log"] = (self.state.get("protection_log", []) + [entry])[-LOG_KEPT:]
        self.emit("protection", **entry)

    def _bracket_event(self, data: dict[str, Any]) -> None:
        """The guard placed, replaced or cancelled a bracket, or closed at market: logged as the
        bot's at entry and as the guard's otherwise."""
        parsed = ids.parse(data.get("client_id", ""))
        if not parsed:
            return
        token = parsed[1]
        pos = self.state["positions"].get(token)
        sym = data.get("symbol", pos.symbol if pos else "")
        action = data.get("action")
        kind = data.get("kind") if action == "bracket" else \
            {"S": "stop", "T": "tp"}.get(parsed[0][:1], "")
        rule = self._moving.get((token, kind))  # the bot moved this level: its own plan
        if action == "bracket" and rule:
            what = words("take-profit moved to {price} ({rule})" if kind == "tp" else
                         "stop moved to {price} ({rule})", price=_price(data.get("stop_price")),
                         rule=words("break-even" if rule == "breakeven" else "trailing stop"
                                    if rule == "trailing" else "FastTP"))
        elif action == "bracket":
            what = words("take-profit placed at {price}" if kind == "tp" else
                         "stop placed at {price}", price=_price(data.get("stop_price")))
            if pos is not None and token not in self._entering:
                pos.protection["repairs"] = pos.protection.get("repairs", 0) + 1
        elif action == "cancel":
            self._cancelled.add(data.get("client_id", ""))
            what = words("order {client_id} cancelled", client_id=data.get("client_id"))
        else:
            return
        self._protection_log(token, sym, "bot" if rule or token in self._entering else "guard", what)

    async def _fee_rate(self, sym: str) -> float:
        """The account's taker rate on ``sym``, asked once; ``DEFAULT_FEE`` while it cannot be
        read (asked again next cycle; the position's row says the fee is assumed)."""
        if sym not in self._fees:
            try:
                self._fees[sym] = float((await self.ex.commission_rate(sym))["takerCommissionRate"])
            except (E.ExchangeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("fee rate of %s unavailable (%s); %.4f assumed", sym, exc, DEFAULT_FEE)
                return DEFAULT_FEE
        return self._fees[sym]

    def funding_due(self, now: int) -> bool:
        """Is the hourly read of the funding so far due at ``now`` (with a position open)?"""
        return now - self._funding_read >= FUNDING_EVERY_MS

    async def _funding_so_far(self, now: int) -> None:
        """Funding received (+) or paid (−) per open position since it opened (hourly)."""
        open_ = [p for p in self.state["positions"].values() if p.is_open]
        if not open_ or not self.funding_due(now):
            return
        try:
            rows = await self.ex.income(None, "FUNDING_FEE",
                                        start_time=min(p.opened_at for p in open_), limit=1000)
        except E.ExchangeError as exc:
            log.warning("funding so far could not be read: %s", exc)
            _funding_unread(open_, now)
            return
        try:  # (asked beside the closing reads and the guard: an odd answer must stop neither)
            got = {p.token: round(sum(float(r["income"]) for r in rows
                                      if r["symbol"] == p.symbol and int(r["time"]) >= p.opened_at),
                                  8) for p in open_}
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            log.warning("funding so far could not be read: unexpected answer (%s)", exc)
            _funding_unread(open_, now)
            return
        self._funding_read = now
        for p in open_:
            p.protection["funding"] = got[p.token]
            p.protection.pop("funding_unread_since", None)

    async def _protection_reads(self, now: int) -> None:
        """Funding so far (hourly) and the fee rates not known yet (new positions), read
        together. A cycle that sent entries asks them beside its closing reads (awaited only
        before the verification, not by the guard), so the new positions' protection is
        verified without a round trip of its own."""
        self._protection_asked = self.state["stats"]["cycles"]
        new = {p.symbol for p in self.state["positions"].values() if p.symbol not in self._fees}
        await together(self.ex, self._funding_so_far(now), *(self._fee_rate(sym) for sym in new))

    async def _verify_protection(self, amounts: dict[str, float], now: int,
                                 asked: dict[str, tuple[float, float]] | None = None) -> None:
        """``asked``: each position's stop and take-profit before this cycle moved any (the
        guard's snapshot was read before it replaced them): a bracket at the level the bot had
        asked for is no disagreement; anything else is, whoever changed it."""
        if self.guard is None:
            return
        if self._protection_asked != self.state["stats"]["cycles"]:  # once a cycle: what
            # failed is asked at the next (each read has its retries already)
            await self._protection_reads(now)
        orders = self.guard.last_orders
        for token, pos in list(self.state["positions"].items()):
            if not pos.is_open or not pos.holds(amounts.get(pos.symbol, 0.0)) \
                    or pos.symbol not in self.rules:
                continue
            want = pos
            if asked and token in asked and asked[token] != (pos.stop, pos.take_profit):
                want = copy.copy(pos)
                want.stop, want.take_profit = asked[token]
            v = verify(want, orders.get(pos.symbol, []), self.rules[pos.symbol],
                       amounts[pos.symbol])
            prot = pos.protection
            before = dict(prot.get("seen") or {})
            for kind, cid in before.items():  # a bracket gone without the bot cancelling it
                if v.seen.get(kind) != cid and cid not in self._cancelled:
                    await self._gone(pos, kind, cid)
            fresh = not prot.get("seen") and not prot.get("checked_at")
            # a bracket never placed yet (an entry resolved after a crash) is no surprise the
            # first time; if it is still missing at the next read-back, it is said then
            said = [f for f in v.findings if not (fresh and f.kind == "missing")]
            keys = {f"{f.kind}:{f.bracket}:{f.client_id}" for f in said}
            for f in said:
                if f"{f.kind}:{f.bracket}:{f.client_id}" not in set(prot.get("alerted", [])):
                    self.alert("error", words("{problem}; the bracket guard repairs it",
                                              problem=f.said), pos.symbol)
                    if f.kind == "foreign_order":
                        self._protection_log(token, pos.symbol, "user", f.said)
            fee = self._fees.get(pos.symbol, DEFAULT_FEE)  # (asked above; not again per row)
            prot.update(status="ok" if v.ok else "problem", stop=v.stop, tp=v.tp,
                        findings=[f.to_dict() for f in v.findings], checked_at=now,
                        seen=v.seen, alerted=sorted(keys), fee_rate=fee,
                        fee_assumed=pos.symbol not in self._fees,
                        at_risk=at_risk(pos, fee, prot.get("funding", 0.0)))
            if v.ok and not prot.get("since"):
                prot["since"] = now
                self._protection_log(token, pos.symbol, "guard", words(
                    "verified on the exchange: stop {stop}, take-profit {tp}", stop=_price(v.stop),
                    tp=_price(v.tp)))
            elif not v.ok:
                prot["since"] = None

    async def _gone(self, pos, kind: str, cid: str) -> None:
        """Who removed a bracket the bot had seen: the exchange (it triggered or expired) or the
        user (cancelled by hand)."""
        try:
            o = await self.ex.query_order(pos.symbol, client_id=cid)
            status = o.get("status")
        except E.ExchangeError:
            status = None
        who = "user" if status == "CANCELED" else "exchange"
        what = {"CANCELED": words("cancelled outside the bot"), "FILLED": words("triggered"),
                "EXPIRED": words("expired")}.get(status, words("no longer open"))
        self._protection_log(pos.token, pos.symbol, who, words(
            "{kind} {client_id} {what}", kind=words("take-profit" if kind == "tp" else "stop"),
            client_id=cid, what=what))
