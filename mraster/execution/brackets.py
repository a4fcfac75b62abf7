"""BracketGuard: every open position has a stop-loss and a take-profit on the exchange.

For each position it compares the exchange's open orders with the intended levels and places what
is missing, replaces what is wrong (side, level), cancels brackets of positions that no longer
exist, and closes at market when price has already passed the stop (that was the stop's intent).
Failures stay in ``brackets_queue.json`` with attempts, the last error and the next try time,
across restarts; after ``alert_after`` failures an alert event is raised for the dashboard.
Recognised orders: see ``mraster.execution.ids`` (our ``mra1`` ids and any closePosition /
reduce-only stop or take-profit placed by hand).
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any, Callable, Mapping

from mraster.domain import Order, Position, Side, position_amounts
from mraster.exchange import errors as E
from mraster.exchange.rules import SymbolRules, bracket_rounding
from mraster.exchange.ratelimit import urgent
from mraster.exchange.together import together
from mraster.execution import ids
from mraster.store import JsonDocument
from mraster.words import words

log = logging.getLogger("mraster.brackets")
_MAX_BRACKET_IDS = 1000  # ids looked up before giving up (an exchange that knows every id)
Emit = Callable[..., None]


class BracketGuard:
    def __init__(self, exchange, rules: dict[str, SymbolRules], queue: JsonDocument,
                 emit: Emit | None = None, alert_after: int = 3,
                 clock: Callable[[], float] = time.time, stop_grace_s: float | None = None,
                 save: Callable[[], None] = lambda: None, close_kind: str = "X") -> None:
        """``save``: persists the positions (the bot's state file), called once a market close's
        ids are chosen and before it leaves, so a restart never sends one of its ids again.
        ``close_kind``: the id kind of its market closes — ``X`` the bot's, ``X2``
        ``brackets_guard.py``'s (it saves no position: running beside the bot, both counted the
        same attempt from the same state file and could send one id twice)."""
        self.ex = exchange
        self.close_kind = close_kind
        self.rules = rules
        self.queue = queue
        self.emit = emit or (lambda *a, **k: None)
        self.alert_after = alert_after
        self.clock = clock
        self.stop_grace_s = stop_grace_s
        self.save = save
        self.last_orders: dict[str, list[dict]] = {}
        # passes in a row each leftover's cancel failed, by symbol (a notice at ``alert_after``)
        self.leftover_failures: dict[str, int] = {}
        # positions past the stop grace whose market close failed (said once, until it closes)
        self.close_failures: set[str] = set()

    async def run(self, positions: Mapping[str, Position], amounts: dict[str, float], *,
                  full: bool = True, orders: list[dict] | None = None,
                  new: bool = False, now_or_never: bool = False) -> dict[str, Any]:
        """One pass. ``positions``: the bot's positions by token; ``amounts``: signed position
        size per symbol on the exchange; ``orders``: the exchange's open orders when the caller
        read them together with the amounts (read here otherwise). ``full=False`` protects just
        the given positions (right after an entry, from the fill) without touching other
        symbols; ``new``: those positions were opened just now, so none of their bracket ids
        was ever sent and the look-up before placing is skipped; ``now_or_never``: every queued
        repair is tried now, whatever its back-off says (a start: the back-off spares an
        exchange that keeps failing within one run, and the failure may have been the
        process's own network). Returns counters of what was done. Its requests may use the
        rate-limit reserve a scan cannot touch (``urgent``)."""
        with urgent():
            return await self._run(positions, amounts, full=full, orders=orders, new=new,
                                   now_or_never=now_or_never)

    async def _run(self, positions: Mapping[str, Position], amounts: dict[str, float], *,
                   full: bool, orders: list[dict] | None, new: bool,
                   now_or_never: bool) -> dict[str, Any]:
        done = {"placed": 0, "replaced": 0, "cancelled": 0, "closed": 0, "failed": 0}
        if orders is None:
            orders = (await self.ex.open_orders() if full else
                      [o for sym in {p.symbol for p in positions.values()}
                       for o in await self.ex.open_orders(sym)])
        by_symbol: dict[str, list[dict]] = {}
        for o in orders:
            by_symbol.setdefault(o["symbol"], []).append(o)
        if full:
            self.last_orders = by_symbol  # what the exchange held as this pass began (read back)
        else:
            for sym in {p.symbol for p in positions.values()}:
                self.last_orders[sym] = by_symbol.get(sym, [])
        queue = self.queue.read().get("items", {})
        start = {token: dict(item) for token, item in queue.items()}
        now = self.clock()

        async def guard(token: str, pos: Position) -> None:
            sym = pos.symbol
            amt = amounts.get(sym, 0.0)
            if not pos.holds(amt):
                return  # closed (the engine records it); leftovers are cancelled below
            item = queue.get(token)
            if item and item.get("next_try", 0) > now and not now_or_never:
                return
            try:
                await self._protect(token, pos, by_symbol.get(sym, []), done, amt, confirm=full,
                                    new=new)
                if item:
                    queue.pop(token, None)
            except E.ExchangeError as exc:
                done["failed"] += 1
                item = item or {"symbol": sym, "side": pos.side.value, "quantity": abs(amt),
                                "entry": pos.entry, "stop": pos.stop,
                                "take_profit": pos.take_profit, "attempts": 0,
                                "client_ids": [ids.order_id("S", token), ids.order_id("T", token)]}
                item["attempts"] += 1
                item.setdefault("since", now)
                item["last_error"] = str(exc)
                item["next_try"] = now + min(300, 5 * 2 ** (item["attempts"] - 1))
                queue[token] = item
                log.error("bracket repair for %s failed (attempt %d): %s", sym, item["attempts"], exc)
                if item["attempts"] >= self.alert_after:
                    self.emit("alert", level="error", symbol=sym, message=words(
                        "{symbol}: stop/take-profit could not be placed after {n} attempts: "
                        "{error}", symbol=sym, n=item["attempts"], error=E.said_error(exc)))
                if self.stop_grace_s is not None and now - item["since"] >= self.stop_grace_s:
                    await self._close_unprotected(token, pos, queue, done)

        # positions are independent (one per symbol): all protected at once, so the tenth
        # position's stop does not wait for nine others' round trips
        for got in await together(self.ex, *(guard(t, p) for t, p in positions.items()),
                                  return_exceptions=True):
            if isinstance(got, BaseException):
                raise got
        # leftovers: brackets on symbols where the exchange has no position any more; one that
        # cannot be cancelled now is tried again next pass, and before any entry there
        # (``clear_leftovers``): it must not cost this pass its record of the repairs above
        if full:
            await self._leftovers(by_symbol, amounts, done)
            for token in [t for t in queue if t not in positions]:
                queue.pop(token)
            self.close_failures.intersection_update(positions)  # (gone: nothing to say)
        self._write_queue(start, queue)
        return done

    async def _leftovers(self, by_symbol: dict[str, list[dict]], amounts: dict[str, float],
                         done: dict[str, Any]) -> None:
        """Cancel the brackets on symbols where the exchange has no position any more. One that
        cannot be cancelled is tried again each pass; after ``alert_after`` passes in a row it
        is said in a notice, once: a ``closePosition`` order acts on whatever position the symbol
        holds next, a position the trader opens there by hand too (the bot's own entries clear
        it first, ``clear_leftovers``)."""
        failing: dict[str, int] = {}
        for sym, olist in by_symbol.items():
            if amounts.get(sym, 0.0) != 0 or not any(ids.bracket_kind(o) for o in olist):
                continue
            try:
                done["cancelled"] += await self._cancel_leftovers(sym, olist)
            except E.ExchangeError as exc:
                done["failed"] += 1
                failing[sym] = n = self.leftover_failures.get(sym, 0) + 1
                log.warning("leftover brackets on %s could not be cancelled: %s", sym, exc)
                if n == self.alert_after:
                    self.emit("alert", level="error", symbol=sym, message=words(
                        "{symbol}: a stop or take-profit left by a closed trade could not be "
                        "cancelled after {n} attempts ({error}); it would act on a position "
                        "opened there by hand: cancel it on the exchange first",
                        symbol=sym, n=n, error=E.said_error(exc)))
        self.leftover_failures = failing

    def _write_queue(self, start: dict[str, dict], queue: dict[str, dict]) -> None:
        """Write only what this pass changed, onto the file as it is now: passes run at once
        (the entries of one cycle, each protecting its own position; ``brackets_guard.py`` in
        another process) and one pass writing back what it read would drop the others'
        repairs."""
        gone = [t for t in start if t not in queue]
        changed = {t: item for t, item in queue.items() if start.get(t) != item}
        if not (gone or changed) and self.queue.exists():
            return

        def apply(doc: dict[str, Any]) -> dict[str, Any]:
            items = dict(doc.get("items", {}))
            for t in gone:
                items.pop(t, None)
            items.update(changed)
            return {"items": items}
        self.queue.update(apply)

    async def clear_leftovers(self, sym: str) -> int:
        """Cancel the brackets a closed position left on ``sym`` (the take-profit after its stop
        filled, both after a close by hand) before a new entry there: a ``closePosition`` order
        acts on whatever position the symbol holds, so a leftover would stop out or take profit
        on the next trade at the old trade's level. Asks the exchange only when the last pass
        saw brackets on ``sym``; raises ExchangeError when they could not be read or cancelled."""
        if not any(ids.bracket_kind(o) for o in self.last_orders.get(sym, ())):
            return 0
        with urgent():
            n = await self._cancel_leftovers(sym, await self.ex.open_orders(sym))
        self.last_orders.pop(sym, None)
        return n

    async def cancel_brackets_of(self, sym: str, token: str) -> int:
        """Cancel the brackets the position ``token`` left on ``sym`` — its own ids only: the
        symbol holds someone else's position now, and their orders are theirs. Raises
        ExchangeError when they could not be read or cancelled."""
        with urgent():
            mine = [o for o in await self.ex.open_orders(sym)
                    if (ids.parse(o.get("clientOrderId", "")) or ("", ""))[1] == token]
            return await self._cancel_leftovers(sym, mine)

    async def _cancel_leftovers(self, sym: str, orders: list[dict]) -> int:
        """Cancel the symbol's brackets, all at once (independent orders); returns how many."""
        async def cancel(o: dict) -> int:
            try:
                await self.ex.cancel_order(sym, order_id=o["orderId"])
            except E.UnknownOrder:
                return 0  # gone already
            self.emit("order", action="cancel_orphan", symbol=sym,
                      client_id=o.get("clientOrderId", ""))
            return 1
        got = await together(self.ex, *(cancel(o) for o in orders if ids.bracket_kind(o)),
                             return_exceptions=True)
        for g in got:
            if isinstance(g, BaseException):
                raise g
        return sum(got)

    async def _close_unprotected(self, token: str, pos: Position, queue: dict, done: dict) -> None:
        """The stop could not be placed within the grace period: a position without a stop is
        the one risk the bot never keeps, so it is closed at market."""
        try:
            if any(ids.bracket_kind(o) == "stop" for o in await self.ex.open_orders(pos.symbol)):
                return  # the stop is there (only the take-profit is missing): keep the position
            await self.close_at_market(token, pos, "no_stop")
        except E.ExchangeError as exc:
            log.error("closing unprotected %s failed: %s", pos.symbol, exc)
            if token not in self.close_failures:  # only a person can act now: said at once
                self.close_failures.add(token)
                self.emit("alert", level="error", symbol=pos.symbol, message=words(
                    "{symbol}: no stop could be placed within the {seconds} s grace and the "
                    "market close failed too ({error}); the position has no stop: close it on "
                    "the exchange (tried again every pass)", symbol=pos.symbol,
                    seconds=self.stop_grace_s or 0, error=E.said_error(exc)))
            return
        self.close_failures.discard(token)
        queue.pop(token, None)
        done["closed"] += 1

    async def _protect(self, token: str, pos: Position, orders: list[dict], done: dict,
                       amount: float, confirm: bool, new: bool = False) -> None:
        sym = pos.symbol
        if confirm and not {"stop", "tp"} <= {ids.bracket_kind(o) for o in orders}:
            # a bracket is missing: repaired only once the exchange confirms the position is
            # still there, read after the orders (the missing one may have just triggered and
            # closed it; a stop placed then would wait on a flat symbol for the next trade)
            amount = position_amounts(await self.ex.position_risk(sym)).get(sym, 0.0)
            if not pos.holds(amount):
                return
        rules = self.rules[sym]
        close_side = pos.side.opposite.value
        sl_dir, tp_dir = bracket_rounding(pos.side.value)
        want = {"stop": rules.round_price(pos.stop, sl_dir),
                "tp": rules.round_price(pos.take_profit, tp_dir)}
        async def mend(kind: str) -> None:
            mine = [o for o in orders if ids.bracket_kind(o) == kind]
            good = [o for o in mine if o["side"] == close_side
                    and Decimal(o["stopPrice"]) == want[kind] and _covers(o, amount)]
            if good:
                for extra in good[1:] + [o for o in mine if o not in good]:
                    await self._cancel(sym, extra, done)
                return
            if mine and any(ids.parse(o["clientOrderId"]) is None for o in mine) and \
                    all(o["side"] == close_side for o in mine) and pos.origin != "handed_over":
                return  # a hand-placed protective order on the right side: respect it (unless
                # the user handed the position to the bot: then the bot's brackets replace it)
            await self._place(token, pos, kind, want[kind], close_side, done,
                              replacing=bool(mine), new=new)
            for o in mine:
                await self._cancel(sym, o, done)

        # stop and take-profit are separate orders with their own ids: both go out together
        # (a failing one does not hold the other back); the stop's error is raised first
        for got in await together(self.ex, mend("stop"), mend("tp"), return_exceptions=True):
            if isinstance(got, BaseException):
                raise got

    async def _place(self, token: str, pos: Position, kind: str, price: Decimal, close_side: str,
                     done: dict, replacing: bool, new: bool = False) -> None:
        sym = pos.symbol
        letter = "S" if kind == "stop" else "T"
        n = pos.bracket_seq.get(kind, 0)
        cid = ids.order_id(letter + (str(n) if n else ""), token)
        if not (new and n == 0):  # (a new position's first bracket id was never sent)
            # an id the exchange knows (filled, cancelled, open) is never sent again: the next
            # number it does not know. Asked for each number: after a crash the saved position
            # may be several moves behind the exchange, and an id sent again would be refused as
            # a duplicate of its open order, which the look-up then took for the new bracket
            # (and the old one's cancel removed it: a position without a stop)
            for _ in range(_MAX_BRACKET_IDS):
                try:
                    await self.ex.query_order(sym, client_id=cid)
                except E.UnknownOrder:
                    break
                n += 1
                cid = ids.order_id(f"{letter}{n}", token)
            else:
                raise E.ExchangeError(0, f"{sym}: {_MAX_BRACKET_IDS} bracket ids of {token} are "
                                         "taken on the exchange", 0, "/fapi/v1/order")
        typ = "STOP_MARKET" if kind == "stop" else "TAKE_PROFIT_MARKET"
        try:
            await self.ex.new_order(**Order(sym, Side(close_side), typ, cid, stop_price=str(price),
                                            close_position=True).params())
            pos.bracket_seq[kind] = n + 1  # the next move's id: found unknown at one look-up
        except E.WouldTrigger:
            # price is already beyond the level: do what the order was for, close now
            await self.close_at_market(token, pos, "stop_passed" if kind == "stop" else "tp_passed")
            done["closed"] += 1
            return
        done["replaced" if replacing else "placed"] += 1
        self.emit("order", action="bracket", kind=kind, symbol=sym, client_id=cid,
                  stop_price=str(price))

    async def close_at_market(self, token: str, pos: Position, why: str) -> None:
        sym = pos.symbol
        # the trade is booked from the fills; this names why the guard's close happened
        pos.close_reason = {"stop_passed": "stop", "tp_passed": "take_profit"}.get(why, why)
        await market_close(self.ex, self.rules[sym], token, pos, pos.qty, self.close_kind,
                           before=self._save_before_close)
        said = {
            "stop_passed": words("{symbol}: price passed the stop before it could be placed; "
                                 "position closed at market", symbol=sym),
            "tp_passed": words("{symbol}: price passed the take-profit before it could be "
                               "placed; position closed at market", symbol=sym),
            "no_stop": words("{symbol}: no stop could be placed within the {seconds} s grace; "
                             "position closed at market", symbol=sym,
                             seconds=self.stop_grace_s or 0)}[why]
        self.emit("alert", level="warning", symbol=sym, message=said)

    def _save_before_close(self) -> None:
        """A state file that cannot be written (a full disk) must not hold back a close of a
        position without a stop: the close goes out, the failure is logged (and the cycle's own
        save says it again)."""
        try:
            self.save()
        except Exception as exc:  # noqa: BLE001 — any failure of the save, never of the close
            log.error("state not saved before the market close (%s); the close goes out", exc)

    async def _cancel(self, sym: str, o: dict, done: dict) -> None:
        try:
            await self.ex.cancel_order(sym, order_id=o["orderId"])
            done["cancelled"] += 1
            self.emit("order", action="cancel", symbol=sym, client_id=o.get("clientOrderId", ""))
        except E.UnknownOrder:
            pass


async def market_close(ex, rules: SymbolRules, token: str, pos: Position, amount: float,
                       kind: str, before: Callable[[], None] = lambda: None) -> list[Order]:
    """Close ``|amount|`` of the position ``token`` with reduce-only market orders of kind
    ``kind`` (``X`` the guard, ``X1`` the user): one order, or pieces each within the
    exchange's largest market order, all sent at once (each has an id of its own, so none is
    ever sent twice). Each call is a new attempt with ids of its own (``pos.close_seq``,
    saved with the position): a repeated id whose answer was lost would be looked up and found
    as the earlier, filled close. ``before`` runs once the ids are chosen, before anything
    leaves (the engine saves the state there). Raises the first refusal after every piece was
    tried; returns the orders sent."""
    qty = rules.round_qty(abs(amount), market=True)
    pos.close_seq += 1
    kind = ids.attempt(kind, pos.close_seq)
    orders = [Order(pos.symbol, pos.side.opposite, "MARKET",
                    ids.order_id(ids.piece(kind, k), token), quantity=str(q), reduce_only=True)
              for k, q in enumerate(rules.market_pieces(qty), start=1)]
    before()
    for got in await together(ex, *(ex.new_order(**o.params()) for o in orders),
                              return_exceptions=True):
        if isinstance(got, BaseException):
            raise got
    return orders


def _covers(o: dict, amount: float) -> bool:
    """Does the bracket cover the whole position (closePosition, or the full quantity)? A stop
    for half the size leaves the other half without one."""
    return o.get("closePosition") in (True, "true") or \
        Decimal(str(o.get("origQty") or "0")) >= Decimal(str(abs(amount)))


def main(argv: list[str]) -> int:
    """``python brackets_guard.py --once`` (or ``--loop SECONDS``): repair brackets of the
    positions recorded in the state file, with the exchange from the settings."""
    import argparse
    import asyncio

    from mraster.engine.runner import guard_command

    p = argparse.ArgumentParser(prog="brackets_guard.py")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help="one pass, then exit (default)")
    g.add_argument("--loop", type=float, metavar="SECONDS", help="repeat every SECONDS")
    args = p.parse_args(argv)
    return asyncio.run(guard_command(args.loop))
