"""The reconciler: the exchange is the truth, the client id is the owner.

First thing at start and at the top of every cycle it compares the exchange (positions, orders,
fills) with the state: entries whose outcome was not seen are resolved, positions the bot's own
orders opened are adopted and protected whatever the state file says, positions anyone else
holds make their symbol off limits, and positions that vanished are booked from their fills. The
decisions are pure functions (``execution.ownership``, ``execution.booking``); this mixin does the
I/O for ``Engine``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from mraster.domain import (Owner, OrderStatus, Position, PositionStatus, Side, Trade,
                            next_entry_status, position_amounts)
from mraster.exchange import errors as E
from mraster.exchange.together import together
from mraster.execution import ids
from mraster.execution.booking import book_trade, join_fills, position_fills
from mraster.execution.ownership import Ownership, owner_of
from mraster.words import side_word, significant, words

log = logging.getLogger("mraster.engine")
# the notice for a trade that ended without the bot's own exit
CLOSED_ELSEWHERE = {
    "unknown": "{symbol}: closed on the exchange, but no closing fill was found (reason unknown); "
               "pnl counts fees and funding only (pnl {pnl} USDT)",
    "liquidation": "{symbol}: LIQUIDATED by the exchange (pnl {pnl} USDT)",
    "manual": "{symbol}: closed on the exchange by an order the bot did not place (pnl {pnl} USDT)"}

# How long an order the exchange says "does not exist" may still be on its way to the lookup
# (wall time: it is the exchange's own propagation, not the market's clock)
CONSISTENCY_MS = 10_000
# the exit reason of a stop that a profit-locking rule had moved (not a stop-out)
STOP_RULE_REASONS = {"breakeven": "breakeven_stop", "trailing": "trailing_stop",
                     "fasttp": "fasttp_stop"}


def by_symbol(rows: list[dict] | dict) -> dict[str, dict]:
    """Exchange rows (the bulk list, or the one row asked for) keyed by symbol."""
    return {r["symbol"]: r for r in (rows if isinstance(rows, list) else [rows])}


@dataclass
class CycleResult:
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)


class Reconciler:
    """Mixed into ``Engine`` (it uses the engine's exchange, state, rules, guard and events)."""

    @property
    def off_limits(self) -> frozenset[str]:
        """Symbols holding a position the bot does not own: never entered, added to or flipped."""
        return frozenset(e["symbol"] for e in self.state["external_positions"])

    async def reconcile(self) -> CycleResult:
        """Crash-only start: before the first scan, bring the state in line with the exchange
        (adopt, resolve, book) and put every missing stop and take-profit back."""
        await self._load_rules()
        res = CycleResult()
        await self._sync_positions(res, self.market_ms or self.now_ms())
        if self.guard:
            rows = await self.ex.position_risk()
            amounts = position_amounts(rows)
            # every missing bracket at once, also those whose repair failed just before the
            # restart and waits out its back-off (that clock is the market's, which a start
            # does not read before this)
            done = await self.guard.run(self.state["positions"], amounts, now_or_never=True)
            if any(done.values()):
                self.emit("guard", **done)
            # what the exchange held before the repair is reported, not silently fixed
            await self._verify_protection(amounts, self.market_ms or self.now_ms())
        return res

    def _remember_symbol_settings(self, rows: list[dict[str, Any]]) -> None:
        """Each symbol's leverage and margin mode as the exchange reports them, so a restarted
        bot sets them only where they differ from the user's (not once per symbol it enters)."""
        for r in rows:  # (known symbols skipped: every cycle hands in every symbol's row)
            sym = r.get("symbol")
            if not sym:
                continue
            if sym not in self.leverage_set:
                try:
                    self.leverage_set[sym] = int(float(r["leverage"]))
                except (KeyError, TypeError, ValueError):
                    pass
            mode = str(r.get("marginType") or "").lower() if sym not in self.margin_set else ""
            if mode:
                self.margin_set[sym] = "crossed" if mode.startswith("cross") else "isolated"

    async def _sync_positions(self, res: CycleResult, now: int, rows: list[dict] | None = None
                              ) -> None:
        """Reconcile with the exchange, which is the truth: resolve entries whose outcome was
        not seen, adopt positions the bot's own orders opened (whatever the state file says),
        book vanished positions from their fills, and keep the rest off limits. ``rows``: the
        positionRisk read the cycle made (read here when not given)."""
        if rows is None:
            rows = await self.ex.position_risk()
        amounts = position_amounts(rows)
        self._remember_symbol_settings(rows)
        for token, pos in list(self.state["positions"].items()):
            if pos.status is PositionStatus.PENDING:
                await self._resolve_pending(token, pos)
        # the bot's positions that ended on the exchange; their symbols' positions now (if any)
        # are judged below like any other, so a position opened there since is never taken
        # for the bot's (in this cycle either: its entry check reads the off-limits list)
        gone = [(token, pos) for token, pos in list(self.state["positions"].items())
                if pos.is_open and not await self._still_held(pos, amounts.get(pos.symbol, 0.0))]
        fresh = {token for token, pos in gone if amounts.get(pos.symbol, 0.0) and not pos.ended_at}
        for token, pos in gone:
            if token in fresh:
                pos.ended_at = now  # (never guarded, closed or counted as held again)
        ended = {token for token, _ in gone}
        known = {p.symbol for t, p in self.state["positions"].items() if t not in ended}
        reported = {e["symbol"]: e for e in self.state["external_positions"]}
        external = []
        for sym, amt in amounts.items():
            if sym in known:
                continue
            own = await self._ownership(sym, amt)
            if own is not None and own.owner is Owner.BOT and sym in self.rules:
                await self._adopt(sym, amt, rows, own, now)
                continue
            why = own.why if own is not None else words("its orders could not be read this cycle")
            external.append({"symbol": sym, "amount": amt, "why": str(why),
                             "why_words": why.to_dict()})  # (the page's language)
            if sym not in reported:
                self.alert("warning", words("{symbol}: a position the bot did not open ({why}); it "
                                            "is left alone: no entry, add, flip or brackets",
                                            symbol=sym, why=why), sym)
        self.state["external_positions"] = external
        for token, pos in gone:
            if amounts.get(pos.symbol, 0.0) and not await self._cancel_brackets_of(
                    token, pos, tell=token in fresh):
                continue  # booked once its brackets are gone: they would act on the new position
            rec = await self._record_close(token, pos, now)
            if rec is not None:
                res.closed.append(rec)

    async def _still_held(self, pos: Position, amount: float) -> bool:
        """Is the bot's open position ``pos`` part of its symbol's position on the exchange
        (signed ``amount``)? Its direction, and — when the size is not the bot's — its entry
        among the orders that opened the symbol's position now: after the bot's trade closed
        (its stop filled, a close by hand), someone may have opened the symbol again before
        this cycle read it, and that position is theirs. A history that does not reach back to
        the entry, or cannot be read, leaves the position the bot's (protected, as before); so
        does an add by someone else (its brackets close all of it: a notice says so, once)."""
        if not pos.holds(amount):
            return False
        if abs(abs(amount) - pos.qty) <= abs(amount) * 1e-9 or pos.origin == "handed_over":
            return True  # (a position handed over was opened by orders that are not the bot's)
        own = await self._ownership(pos.symbol, amount)
        if own is None or not own.opened_by:
            return True
        if not own.includes(pos.entry_client_id):
            return False
        if own.owner is Owner.EXTERNAL and abs(amount) > pos.qty and \
                pos.token not in self._told_added:  # added to by others: the trader should know
            self._told_added.add(pos.token)
            self.alert("warning", words(
                "{symbol}: the bot's position was added to by an order the bot did not place "
                "({size} now, the bot's {qty}); its stop and take-profit close all of it",
                symbol=pos.symbol, size=abs(amount), qty=pos.qty), pos.symbol)
        return True

    async def _cancel_brackets_of(self, token: str, pos: Position, tell: bool) -> bool:
        """Cancel the stop and take-profit an ended position left on a symbol that holds a
        position again (``closePosition`` orders act on whatever the symbol holds: they would
        close someone else's position at the bot's levels; ``BracketGuard.cancel_brackets_of``:
        its own ids only); False when they could not all be cancelled (tried again each
        cycle, the trade booked then), with a notice the first time (``tell``: once, not every
        cycle while the exchange refuses) and a log line after."""
        if self.guard is None:  # (no rules yet: the next cycle, which loads them, tries)
            return False
        try:
            await self.guard.cancel_brackets_of(pos.symbol, token)
        except E.ExchangeError as exc:
            if not tell:
                log.warning("%s: the closed trade's brackets could not be cancelled: %s",
                            pos.symbol, exc)
                return False
            self.alert("error", words("{symbol}: the stop or take-profit of the bot's closed trade "
                                      "could not be cancelled ({error}); it would act on the "
                                      "position the symbol holds now; tried again next cycle",
                                      symbol=pos.symbol, error=E.said_error(exc)), pos.symbol)
            return False
        return True

    async def _ownership(self, sym: str, amount: float) -> Ownership | None:
        """Who opened ``sym``'s position, from the exchange's order history; remembered while
        the size stays the same (None when the history could not be read: off limits for now)."""
        hit = self._owners.get(sym)
        if hit is not None and hit[0] == amount:
            return hit[1]
        try:
            orders = await self.ex.all_orders(sym, limit=1000)
        except E.ExchangeError as exc:
            log.warning("order history of %s could not be read: %s", sym, exc)
            return None
        own = owner_of(amount, orders)
        self._owners[sym] = (amount, own)
        return own

    async def adopt_external(self, sym: str) -> tuple[bool, str]:
        """The user hands a position the bot does not own to the bot (a typed confirmation on
        the dashboard): it is adopted like one of its own, and its protective orders from others
        are replaced by the bot's brackets. Returns (adopted, sentence)."""
        await self._load_rules()
        rows = await self.ex.position_risk()
        amount = position_amounts(rows).get(sym, 0.0)
        if not amount or sym not in {e["symbol"] for e in self.state["external_positions"]}:
            return False, words("not adopted: no position on {symbol} that the bot does not "
                                "already manage", symbol=sym)
        now = self.market_ms or self.now_ms()
        token = ids.new_token(now, taken=self.state["positions"])
        own = Ownership(Owner.BOT, "handed to the bot by the user", token=token,
                        entry_client_id=ids.order_id("E", token), opened_at=now)
        await self._adopt(sym, amount, rows, own, now, origin="handed_over")
        self.state["external_positions"] = [e for e in self.state["external_positions"]
                                            if e["symbol"] != sym]
        self._owners.pop(sym, None)
        if self.guard:
            await self.guard.run(self.state["positions"], position_amounts(rows))
        pos = self.state["positions"][token]
        return True, words("adopted {side} {qty} {symbol} at {entry}: stop {stop}, take-profit {tp}",
                           side=words("long" if pos.side.value == "BUY" else "short"),
                           qty=pos.qty, symbol=sym, entry=significant(pos.entry),
                           stop=significant(pos.stop), tp=significant(pos.take_profit))

    async def _adopt(self, sym: str, amount: float, rows: list[dict], own: Ownership,
                     now: int, origin: str = "adopted") -> None:
        """Take back a position the bot's own entry opened but the state does not know (a lost
        state file, a lost answer): entry and size from the exchange, stop and take-profit from
        its open brackets when they are there, else re-derived from the ATR as at entry."""
        side = Side.of_amount(amount)
        row = by_symbol(rows)[sym]
        entry = float(row.get("entryPrice") or 0)
        qty = abs(amount)
        # the token of its entry's client id, unless another symbol's position holds it (one
        # position's record never overwrites another's)
        token = own.token if own.token and own.token not in self.state["positions"] else \
            ids.new_token(now, taken=self.state["positions"])
        s = self.s
        levels: dict[str, float] = {}
        for o in await self.ex.open_orders(sym):
            kind = ids.bracket_kind(o)
            if kind and ids.parse(o.get("clientOrderId", "")) and o["side"] == side.opposite.value:
                levels[kind] = float(o["stopPrice"])
        atr = 0.0
        ltf, htf = (await self._fetch_candles([sym], now)).get(sym, (None, None))
        f = self._features(sym, ltf, htf) if ltf is not None else None
        if f is not None:
            atr = f.atr
        if not atr:  # no candles: the stop the user's risk budget allows at today's equity
            equity, _ = await self._equity()
            atr = equity * s["ASTER_RISK_PER_TRADE"] / qty / s["ASTER_SL_ATR_MULT"]
        d = side.sign
        stop = levels.get("stop", entry - d * s["ASTER_SL_ATR_MULT"] * atr)
        tp = levels.get("tp", entry + d * s["ASTER_TP_ATR_MULT"] * atr)
        self.state["positions"][token] = Position(
            token=token, symbol=sym, side=side, status=PositionStatus.OPEN, entry=entry, qty=qty,
            stop=stop, initial_stop=stop, take_profit=tp, opened_at=own.opened_at or now,
            entry_client_id=own.entry_client_id, atr=atr,
            leverage=int(float(row.get("leverage") or s["ASTER_LEVERAGE"])),
            risk_usdt=qty * abs(entry - stop), sl_atr_mult=s["ASTER_SL_ATR_MULT"],
            tp_atr_mult=s["ASTER_TP_ATR_MULT"], origin=origin)
        self.state["stats"]["taken"] += 1
        if origin == "adopted":
            self.alert("warning", words("{symbol}: the bot's own {side} position ({qty} at "
                                        "{entry}) was missing from the state; adopted from the "
                                        "exchange and protected", symbol=sym,
                                        side=side_word(side.value),
                                        qty=qty, entry=entry), sym)
        else:
            self.alert("warning", words("{symbol}: the position ({side} {qty} at {entry}) is the "
                                        "bot's now, at your request; its brackets replace the "
                                        "ones on the exchange", symbol=sym,
                                        side=side_word(side.value),
                                        qty=qty, entry=entry), sym)
        self.emit("order", action="entry_adopted", symbol=sym, side=side.value, qty=qty,
                  price=entry, client_id=own.entry_client_id)

    async def _resolve_pending(self, token: str, pos: Position) -> None:
        """An entry whose outcome was not seen (lost answer, crash): only the exchange can say.
        A failed lookup leaves it pending; "does not exist" is believed only after the exchange's
        consistency window has passed since it was sent."""
        try:
            o = await self.ex.query_order(pos.symbol, client_id=pos.entry_client_id)
        except E.UnknownOrder:
            o = None
        except E.ExchangeError as exc:
            log.warning("%s: entry %s still unknown (lookup failed: %s)", pos.symbol,
                        pos.entry_client_id, exc)
            return
        if pos.entry_status is OrderStatus.SENT:  # a crash after the intent was saved
            pos.entry_status = next_entry_status(pos.entry_status, "unknown")
        if o and float(o.get("executedQty") or 0) > 0:
            pos.entry_status = next_entry_status(pos.entry_status, "filled")
            pos.fill(float(o["avgPrice"]), float(o["executedQty"]), PositionStatus.OPEN,
                     self.s["ASTER_SL_ATR_MULT"], self.s["ASTER_TP_ATR_MULT"])
            self.state["stats"]["taken"] += 1
            self.emit("order", action="entry_adopted", symbol=pos.symbol, side=pos.side.value,
                      qty=pos.qty, price=pos.entry, client_id=pos.entry_client_id)
        elif (o is None and time.time() * 1000 - pos.sent_ms >= CONSISTENCY_MS) or \
                (o is not None and o.get("status") in ("CANCELED", "EXPIRED", "REJECTED")):
            pos.entry_status = next_entry_status(pos.entry_status, "refused")
            del self.state["positions"][token]
            self.emit("order", action="entry_not_placed", symbol=pos.symbol,
                      client_id=pos.entry_client_id)

    async def _record_close(self, token: str, pos: Position, now: int) -> dict[str, Any] | None:
        """The position is gone: book it from the exchange's fills of its own orders (see
        ``execution.booking``), teach the policy. None (booked on a later cycle) while the
        fills cannot be read."""
        sym, side = pos.symbol, pos.side
        since = int(pos.opened_at) - 60_000
        # the bot's own entry leaves after ``opened_at`` (sent_ms set), its brackets later; an
        # adopted position's orders may be older than its adoption: a day is looked back
        orders_since = since if pos.sent_ms else since - 86_400_000
        # fills, orders and funding do not depend on each other: asked together
        trades, orders, income = await together(
            self.ex, self.ex.user_trades(sym, start_time=since, limit=1000),
            self.ex.all_orders(sym, start_time=orders_since, limit=1000),
            self.ex.income(sym, "FUNDING_FEE", start_time=pos.opened_at), return_exceptions=True)
        for got in (trades, orders, income):
            if isinstance(got, BaseException) and not isinstance(got, E.ExchangeError):
                raise got
        for got in (trades, orders):
            if isinstance(got, E.ExchangeError):
                log.warning("%s: fills of the closed position could not be read (%s); booked "
                            "next cycle", sym, got)
                return None
        entries, exits = position_fills(join_fills(trades, orders), token, side, pos.qty)
        funding_rows = [] if isinstance(income, E.ExchangeError) else income
        funding = sum(float(r["income"]) for r in funding_rows)
        b = book_trade(side, entries, exits, entry_hint=pos.entry, qty_hint=pos.qty,
                       initial_stop=pos.initial_stop, funding=funding,
                       guard_reason=pos.close_reason)
        reason = b.reason
        if reason == "stop" and pos.stop_rule:  # a stop moved to lock in profit
            reason = STOP_RULE_REASONS[pos.stop_rule]
        rec = Trade(symbol=sym, side=side, qty=b.qty, entry=b.entry, exit=b.exit,
                    initial_stop=pos.initial_stop, stop=pos.stop, take_profit=pos.take_profit,
                    opened_at=pos.opened_at, closed_at=b.closed_at or now, pnl=b.pnl, fees=b.fees,
                    funding=b.funding, r=b.r, reason=reason, arm=pos.arm,
                    client_id=pos.entry_client_id, origin=pos.origin, ai=pos.ai).to_dict()
        if b.reason in ("unknown", "liquidation", "manual") and pos.close_reason != "manual":
            self.alert("error" if b.reason != "manual" else "warning",
                       words(CLOSED_ELSEWHERE[b.reason], symbol=sym, pnl=round(b.pnl, 4)), sym)
        if self.journal is not None:  # the trade with its fills, funding and orders, at once
            mine = {f.order_id for f in entries + exits}
            self.journal.book(rec, entries + exits, funding_rows,
                              [o for o in orders if int(o["orderId"]) in mine])
        hist = self.state["history"]  # in place: a backtest keeps every trade in it
        hist.append(rec)
        del hist[:max(0, len(hist) - self.s["ASTER_HISTORY_MAX"])]
        del self.state["positions"][token]
        r_mult = b.r
        if pos.policy_features and pos.arm:
            self.policy.learn(pos.policy_features, pos.arm, r_mult)
        if pos.ai_source in ("ai", "cache") and self.advisor and self.advisor.learner:
            self.advisor.learner.traded(sym, b.pnl, int(time.time() * 1000))
        if self.copilots is not None:
            from mraster.ai.postmortem import measure  # AI mode only: its models load pydantic

            ltf, _ = (await self._fetch_candles([sym], now)).get(sym, (None, None))
            measured = measure(rec, ltf, pos.quote_price)
            self.copilots.after_close(rec, pos.bucket, {**measured, "regime": pos.regime})
        self.emit("close", **rec)
        return rec
