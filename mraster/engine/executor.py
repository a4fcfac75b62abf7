"""The executor: turns an ``Intent`` into an order and a protected position.

It sizes the entry by risk (leverage set on the exchange first, the stop kept before the
liquidation price, the user's exposure caps), writes the position to disk before the order leaves
(crash-only), sends the entry with an idempotent client id and runs the order-outcome state
machine (``domain.next_entry_status``): only the exchange's explicit refusal ends an entry; an
unknown outcome stays pending until the reconciler hears from the exchange. Then the bracket
guard protects the fill. Also the user's own actions: a confirmed chat trade and closes. A mixin
of ``Engine``.
"""
from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
import time
from typing import Any, Mapping

from mraster.domain import Intent, Order, OrderStatus, Position, PositionStatus, Side, next_entry_status
from mraster.engine.market_data import snapshot
from mraster.engine.reconciler import CycleResult, by_symbol, position_amounts
from mraster.exchange import errors as E
from mraster.exchange.together import answers_at_once, together
from mraster.execution import ids
from mraster.execution.brackets import market_close
from mraster.liquidation import DEFAULT_BRACKETS, isolated_margin, liquidation_price, stop_is_safe
from mraster.policy import Decision
from mraster.risk import check_order, exposure_cap
from mraster.strategy.filters import REASONS, market_filters, side_filters
from mraster.strategy.signals import expected_r, win_probability
from mraster.strategy.sizing import Order as Sized, plan_order, size_multiplier
from mraster.words import Words, significant, words

LEVERAGE_STEPS = (100, 75, 50, 25, 20, 10, 5, 3, 2, 1)


@dataclasses.dataclass(frozen=True)
class _Planned:
    """An entry the dry run of ``Executor._arm`` counts as held (what the caps read of it)."""
    symbol: str
    entry: float
    stop: float
    qty: float


class Executor:
    """Mixed into ``Engine``."""

    async def _enter(self, res: CycleResult, intents: list[Intent], equity: float, used: float,
                     now: int) -> float:
        """Open the intended trades in the order given; returns the margin in use afterwards.

        Each trade is decided and sized one after the other, against the margin the ones before
        it reserve (their planned margin, before any fill is known: the caps see every order
        already on its way). Once decided, its order goes out and its brackets follow while the
        next one is decided; margin modes and leverages are set together first (``_arm``): N
        entries take about 3 round trips instead of 3 N (a cold start with 6 entries: 18).
        Against the in-process simulator each entry is sent as soon as it is decided and
        awaited (``answers_at_once``): nothing to overlap there."""
        await self._arm(intents, equity, used)
        sending: list[asyncio.Future] = []
        try:
            for it in intents:
                used, ready = await self._prepare(res, it, equity, used, now)
                if ready is None:
                    continue
                if answers_at_once(self.ex):
                    await self._send(res, *ready)
                else:
                    sending.append(asyncio.ensure_future(self._send(res, *ready)))
            got = await asyncio.gather(*sending, return_exceptions=True)
        except Exception:
            # the entries already sent finish first (filled ones get their brackets now, not
            # after the next start's reconciliation); nothing is left running unawaited
            await asyncio.gather(*sending, return_exceptions=True)
            raise
        except BaseException:  # cancelled (stopping): so are they; their outcome is looked up
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            raise
        for g in got:
            if isinstance(g, BaseException):
                raise g
        return used

    async def _prepare(self, res: CycleResult, it: Intent, equity: float, used: float,
                       now: int) -> tuple[float, tuple[Intent, Position, Sized, float, float] | None]:
        """Decide, size and record one trade (leverage and margin mode set on the exchange
        first); returns the margin in use with it reserved, and what ``_send`` needs."""
        sym, side = it.symbol, it.side.value
        gate = "stopping" if self.stopping() else self.portfolio().gate(sym, self.s)
        if gate:
            self._skip(res, sym, gate, side=side)
            return used, None
        f, rules, ai = it.features, self.rules[sym], it.ai
        s, mult, want, price = self._terms(it)
        sl_mult, tp_mult = s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]
        # refused as it would go out at the leverage wanted (its stop clear of the liquidation
        # price, so the leverage stays): nothing is set on the exchange for it. (Sized at a lower
        # leverage, for the liquidation buffer, a smaller order might pass: that is tried below.)
        planned = plan_order(side=side, price=price, atr=f.atr, equity=equity, used_margin=used,
                             rules=rules, mult=mult, max_leverage=want, s=s)
        refused = self._refusal(planned, equity, used, s)
        if refused and (planned.reason or self._stop_before_liquidation(sym, side, price, planned,
                                                                        equity, used)):
            self._skip(res, sym, refused[0], side=side, **refused[1])
            return used, None
        margin, lever = await self._set_margin_and_leverage(sym, s, want)
        if isinstance(margin, E.ExchangeError):
            self._skip(res, sym, "margin_mode" if margin.code in (-4047, -4048) else
                       "order_failed", side=side, error=str(margin))
            return used, None
        if isinstance(lever, E.ExchangeError):
            self._skip(res, sym, "order_failed", side=side, error=str(lever))
            return used, None
        order = plan_order(side=side, price=price, atr=f.atr, equity=equity, used_margin=used,
                           rules=rules, mult=mult, max_leverage=self.leverage_set[sym], s=s)
        while not order.reason and not self._stop_before_liquidation(sym, side, price, order,
                                                                     equity, used):
            # the stop would come after the liquidation: lower the leverage, if anything can
            lower = max(1, order.leverage // 2)
            if lower >= order.leverage:
                order = dataclasses.replace(order, reason="liquidation_risk")
                break
            try:
                await self._set_leverage(sym, lower)
            except E.ExchangeError as exc:
                self._skip(res, sym, "order_failed", side=side, error=str(exc))
                return used, None
            order = plan_order(side=side, price=price, atr=f.atr, equity=equity,
                               used_margin=used, rules=rules, mult=mult,
                               max_leverage=self.leverage_set[sym], s=s)
        refused = self._refusal(order, equity, used, s)
        if refused:
            self._skip(res, sym, refused[0], side=side, **refused[1])
            return used, None
        if self.guard:
            try:
                self.orders_sent += await self.guard.clear_leftovers(sym)
            except E.ExchangeError as exc:
                self._skip(res, sym, "order_failed", side=side,
                           error=f"brackets left by the previous trade could not be cancelled: {exc}")
                return used, None
        # none of the positions held, nor of the tokens given out at this moment (a position
        # may have closed since: the journal knows a trade by its entry's id)
        at, issued = self._issued
        if at != now:
            self._issued = (now, issued := set())
        token = ids.new_token(now, self.token_tags() if self.token_tags is not None else None,
                              taken=issued | set(self.state["positions"]))
        issued.add(token)
        cid = ids.order_id("E", token)
        pos = Position(token=token, symbol=sym, side=it.side, status=PositionStatus.PENDING,
                       entry=price, qty=float(order.qty), stop=0.0, initial_stop=0.0,
                       take_profit=0.0, opened_at=now, entry_client_id=cid, atr=f.atr,
                       leverage=order.leverage, sl_atr_mult=sl_mult, tp_atr_mult=tp_mult,
                       entry_status=OrderStatus.SENT, origin=it.origin, arm=it.decision.arm,
                       policy_features=it.policy_features, expected_r=it.expected_r,
                       bucket=it.decision.bucket,
                       ai=ai.explanation if ai is not None else None,
                       ai_source=ai.source if ai is not None else None,
                       fasttp=ai.fasttp.model_dump(exclude_none=True)
                       if ai is not None and ai.source != "fallback" and ai.fasttp else None,
                       quote_price=price,
                       regime=self.copilots.regime if self.copilots is not None else None,
                       sent_ms=int(time.time() * 1000))  # wall: the exchange's consistency window
        pos.fill(price, float(order.qty), PositionStatus.PENDING, sl_mult, tp_mult)
        # Crash-only: the intent is on disk before the order leaves, so a crash at any line
        # leaves a position the next start adopts (by its client id) instead of an unknown one.
        self.state["positions"][token] = pos
        if sym in self.price_places:  # the page may show it from this save: its price decimals
            self.state.setdefault("ticks", {})[sym] = self.price_places[sym]
        self.save()
        self.orders_sent += 1
        return used + order.notional / order.leverage, (it, pos, order, sl_mult, tp_mult)

    def _terms(self, it: Intent) -> tuple[Mapping[str, Any], float, int, float]:
        """(settings with this trade's stop and target multiples, size multiplier, leverage
        wanted, entry price) of an intended trade: the copilots and the advisor may only make
        it smaller, lower its leverage or move its levels."""
        s, sym, side = self.s, it.symbol, it.side.value
        mult = size_multiplier(it.decision.bucket, it.confidence, s)
        # yellow: smaller; the sentinel never makes a trade larger
        mult *= (self._label(sym) or {}).get("size_factor", 1.0)
        price = it.snapshot.ask if it.side is Side.BUY else it.snapshot.bid
        want = min(int(s["ASTER_LEVERAGE"]), self.max_lev.get(sym, 125))
        ai = it.ai
        sl_mult, tp_mult = s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]
        if self.copilots is not None:  # playbook and tuner: size factors of at most 1
            mult *= self.copilots.size_factor(side, it.decision.bucket)
            sl_bias, tp_bias = self.copilots.stop_target_bias()
            sl_mult, tp_mult = sl_mult * sl_bias, tp_mult * tp_bias
        if ai is not None and ai.source != "fallback":  # clamped: it can only lower the risk
            mult *= ai.size_multiplier
            want = min(want, ai.leverage or want)
            sl_mult, tp_mult = sl_mult * ai.sl_multiplier, tp_mult * ai.tp_multiplier
        if (sl_mult, tp_mult) != (s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]):
            s = {**s, "ASTER_SL_ATR_MULT": sl_mult, "ASTER_TP_ATR_MULT": tp_mult}
        return s, mult, want, price

    async def _set_margin_and_leverage(self, sym: str, s: Mapping[str, Any],
                                       want: int) -> tuple[Any, Any]:
        """Margin mode and leverage, where they differ from what the symbol has: independent
        settings, asked at once; each result is None or the exchange's refusal."""
        got = await together(
            self.ex,
            self._set_margin_type(sym) if self.margin_set.get(sym) != s["ASTER_MARGIN_TYPE"]
            else asyncio.sleep(0),
            self._set_leverage(sym, want) if self.leverage_set.get(sym) != want
            else asyncio.sleep(0), return_exceptions=True)
        for exc in got:
            if isinstance(exc, BaseException) and not isinstance(exc, E.ExchangeError):
                raise exc
        return got[0], got[1]

    async def _arm(self, intents: list[Intent], equity: float, used: float) -> None:
        """Margin mode and leverage of the entries that will go out, set together before the
        first is sized (sizing relies on the leverage the exchange accepted): one round trip
        for the cycle instead of one per entry. Which ones: a dry run of the sizing in order,
        each planned order reserved for the next (its gate and caps as ``_prepare`` checks
        them, at the leverage wanted: if the exchange accepts less the order is smaller, so
        nothing armed here is refused for size later). A refusal here is said when its entry
        is prepared, which asks again."""
        held: dict[str, Any] = dict(self.state["positions"])
        pf = dataclasses.replace(self.portfolio(), positions=held)
        jobs = []
        for k, it in enumerate(intents):
            if self.stopping():
                break
            if pf.gate(it.symbol, self.s):
                continue
            s, mult, want, price = self._terms(it)
            order = plan_order(side=it.side.value, price=price, atr=it.features.atr,
                               equity=equity, used_margin=used, rules=self.rules[it.symbol],
                               mult=mult, max_leverage=want, s=s)
            if self._refusal(order, equity, used, s, held):
                continue
            jobs.append(self._set_margin_and_leverage(it.symbol, s, want))
            used += order.notional / order.leverage
            held[f"armed-{k}"] = _Planned(it.symbol, price, float(order.stop), float(order.qty))
        for got in await together(self.ex, *jobs, return_exceptions=True):
            if isinstance(got, BaseException) and not isinstance(got, E.ExchangeError):
                raise got

    async def _send(self, res: CycleResult, it: Intent, pos: Position, order: Sized,
                    sl_mult: float, tp_mult: float) -> None:
        """Send one recorded entry and, once it fills, its stop and take-profit."""
        sym, side, cid, ai = it.symbol, it.side.value, pos.entry_client_id, it.ai
        try:
            # the symbol's open orders (what the guard protects the fill against) are read
            # while the entry is in flight: the stop goes out one round trip after the fill
            filled, book = await together(
                self.ex,
                self.ex.new_order(**Order(sym, it.side, "MARKET", cid, quantity=str(order.qty),
                                          result=True).params()),
                self.ex.open_orders(sym) if self.guard else asyncio.sleep(0),
                return_exceptions=True)
            if isinstance(filled, BaseException):
                raise filled
        except E.ExchangeError as exc:
            if not E.is_refusal(exc):
                # unknown is not refused: the order may have filled; it stays pending (the
                # symbol blocked) until the exchange says what happened
                pos.entry_status = next_entry_status(pos.entry_status, "unknown")
                self._skip(res, sym, "entry_unknown", side=side, error=str(exc))
                self.alert("warning", words("{symbol}: entry outcome unknown ({error}); it is looked "
                                            "up on the exchange every cycle until known",
                                            symbol=sym, error=E.said_error(exc)), sym)
                return
            next_entry_status(pos.entry_status, "refused")
            del self.state["positions"][pos.token]
            self._skip(res, sym, "order_failed", side=side, error=str(exc))
            self.alert("error", words("{symbol}: entry refused by the exchange: {error}",
                                      symbol=sym, error=E.said_error(exc)), sym)
            return
        pos.entry_status = next_entry_status(pos.entry_status, "filled")
        pos.fill(float(filled.get("avgPrice") or 0) or pos.quote_price,
                 float(filled.get("executedQty") or order.qty), PositionStatus.OPEN, sl_mult, tp_mult)
        self.state["stats"]["taken"] += 1
        res.opened.append(sym)
        res.decisions[sym] = {"action": "TAKE", "reason": "signal", "side": side, "qty": pos.qty,
                              "entry": pos.entry, "stop": pos.stop, "take_profit": pos.take_profit,
                              "expected_r": round(it.expected_r, 3),
                              "policy": it.decision.to_dict(), **it.info,
                              **({"ai": ai.explanation, "ai_source": ai.source} if ai else {})}
        self.emit("order", action="entry", symbol=sym, side=side, qty=pos.qty, price=pos.entry,
                  client_id=cid)
        if self.guard:
            self._entering.add(pos.token)  # the entry's own brackets: the bot's, not repairs
            try:
                # (open orders that could not be read are read again by the guard: never a
                # reason to leave the fill unprotected)
                done = await self.guard.run({pos.token: pos}, {sym: pos.qty * pos.sign},
                                            full=False,
                                            orders=book if isinstance(book, list) else None,
                                            new=True)
            finally:
                self._entering.discard(pos.token)
            if done["failed"]:
                self.alert("error", words("{symbol}: position opened but its brackets could not "
                                          "be placed yet; the guard keeps retrying", symbol=sym), sym)

    def _stop_before_liquidation(self, sym: str, side: str, price: float, order, equity: float,
                                 used: float) -> bool:
        """Would this order's stop trigger before its liquidation, with the user's buffer?"""
        sign = 1 if side == "BUY" else -1
        qty = float(order.qty)
        if self.s["ASTER_MARGIN_TYPE"] == "isolated":
            wallet = isolated_margin(price, qty, order.leverage)
        else:  # crossed: what the account has free to back it
            wallet = max(0.0, equity - used)
        liq = liquidation_price(sign, price, qty, wallet, self.brackets.get(sym, DEFAULT_BRACKETS))
        return stop_is_safe(sign, price, float(order.stop), liq, self.s["ASTER_LIQUIDATION_BUFFER"])

    async def _set_margin_type(self, sym: str) -> None:
        """The user's margin mode on ``sym`` before its first entry ("no change" is success)."""
        want = self.s["ASTER_MARGIN_TYPE"]
        try:
            await self.ex.set_margin_type(sym, want.upper())
        except E.ExchangeError as exc:
            if exc.code != -4046:
                raise
        self.margin_set[sym] = want

    async def hedge_mode(self) -> bool:
        """True when the account holds two positions per symbol (hedge mode): the bot's one-way
        orders would be refused (-4061) and its closePosition stops would not cover both sides."""
        return bool((await self.ex.position_mode()).get("dualSidePosition"))

    def _refusal(self, order: Sized, equity: float, used: float, s: Mapping[str, Any],
                 held: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
        """(reason, figures) when the sizing, the order limits or a total cap refuse this order
        (``held``: the positions the caps count, the bot's own by default), else None."""
        reason = order.reason or check_order(notional=order.notional, leverage=order.leverage,
                                             risk_usdt=order.risk_usdt, equity=equity,
                                             used_margin=used, s=s)
        if reason:
            return reason, {"qty": str(order.qty), "notional": round(order.notional, 4)}
        return exposure_cap(self.state["positions"] if held is None else held,
                            risk_usdt=order.risk_usdt, notional=order.notional, equity=equity, s=s)

    async def _set_leverage(self, sym: str, lev: int) -> None:
        """Set leverage before sizing relies on it; when the symbol's maximum is lower than
        asked, use the highest accepted value below it."""
        for cand in [lev] + [x for x in LEVERAGE_STEPS if x < lev]:
            try:
                await self.ex.set_leverage(sym, cand)
                self.leverage_set[sym] = cand
                if cand < lev:
                    self.max_lev[sym] = cand
                return
            except E.BadRequest as exc:
                if exc.code != -4028:
                    raise
        raise E.BadRequest(-4028, f"no leverage accepted for {sym}")

    async def manual_entry(self, symbol: str, side: str) -> tuple[bool, Words]:
        """A trade the user confirmed (a chat proposal). Only the signal and the policy are the
        user's: the market filters, the sentinel, the entry gate, the risk sizing (the smallest
        bucket), the order checks and the brackets are the bot's own. Returns (opened, sentence)."""
        s = self.s
        await self._load_rules()
        r = self.rules.get(symbol)
        if r is None or r.status != "TRADING" or r.quote != s["ASTER_QUOTE"]:
            return False, words("not opened: {symbol} is not a tradable {quote} perpetual here",
                                symbol=symbol, quote=s["ASTER_QUOTE"])
        tick_rows, book_rows, prem_rows = await together(
            self.ex, self.ex.ticker_24h(symbol), self.ex.book_ticker(symbol),
            self.ex.premium_index(symbol))
        prems = by_symbol(prem_rows)
        now = int(prems.get(symbol, {}).get("time") or 0) or self.now_ms()
        snap = snapshot(symbol, by_symbol(tick_rows), by_symbol(book_rows), prems)
        ltf, htf = (await self._fetch_candles([symbol], now)).get(symbol, (None, None))
        f = self._features(symbol, ltf, htf) if ltf is not None else None
        if snap is None or f is None:
            return False, words("not opened: no usable market data for {symbol} yet", symbol=symbol)
        label = self._label(symbol)
        # may this symbol be traded at all (cooldown, the user's position, a breaker)? Said
        # first; then whether the market allows it now
        reason = self.portfolio().gate(symbol, s) or \
            market_filters(snap, f.wickiness, s) or side_filters(snap, side, s) or \
            ("sentinel_block" if label and label["label"] == "red" else None)
        if reason:
            return False, words("not opened: {why}", why=Words(REASONS.get(reason, reason)))
        p = win_probability(f, side)
        er = expected_r(p, s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"], f.atr, f.price,
                        snap.spread, snap.funding, side)
        it = Intent(symbol=symbol, side=Side(side), expected_r=er, win_prob=p, features=f,
                    snapshot=snap, decision=Decision("TAKE", "S", "", "manual"),
                    policy_features=None, confidence=0.5,
                    info={"rsi": round(f.rsi, 2), "htf_trend": f.htf_trend}, origin="chat")
        res = CycleResult()
        equity, used = await self._equity()
        await self._enter(res, [it], equity, used, now)
        d = res.decisions.get(symbol, {})
        if d.get("action") != "TAKE":
            return False, words("not opened: {why}", why=Words(
                d.get("why") or REASONS.get(d.get("reason", ""), "refused")))
        return True, words("opened {side} {qty} {symbol} at {entry}, stop {stop}, take-profit {tp}",
                           side=words("long" if side == "BUY" else "short"), qty=d["qty"],
                           symbol=symbol, entry=significant(d["entry"]), stop=significant(d["stop"]),
                           tp=significant(d["take_profit"]))

    async def close_positions(self, symbol: str | None = None) -> Words:
        """Close the bot's positions at market (one symbol, or all when ``symbol`` is None), then
        book the closes and cancel the brackets left behind. Positions the bot did not open are
        left alone. The positions are closed at once, each on its own: one whose close fails
        (said in a notice naming it) holds back neither the others nor their bookings (a
        *Flatten all* stopped at the first failure, leaving the positions after it open); the
        first failure is raised after the rest are done, carrying the command's answer
        (``said``: the symbols closed and not closed; ``partly``: some were). Returns the
        sentence for the dashboard (as words: the page's language)."""
        await self._load_rules()
        amounts = position_amounts(await self.ex.position_risk())
        partly: list[Words] = []

        async def close(token: str, pos: Position, amt: float) -> None:
            sym = pos.symbol
            pos.close_reason = "manual"
            self.state["cooldowns"][sym] = self.now_ms() + int(
                self.s["ASTER_MANUAL_CLOSE_COOLDOWN_MINUTES"] * 60_000)
            sent = await market_close(self.ex, self.rules[sym], token, pos, amt, "X1",
                                      before=self.save)
            for order in sent:
                self.emit("order", action="close", symbol=sym, side=order.side.value,
                          qty=order.quantity, client_id=order.client_id)
            done = sum(Decimal(o.quantity) for o in sent)
            if done < self.rules[sym].round_qty(abs(amt), market=True):
                note = words("{symbol}: {qty} of {total} closed (the exchange takes at most {most} "
                             "in one market order); close again for the rest", symbol=sym,
                             qty=float(done), total=abs(amt),
                             most=float(self.rules[sym].market_max_qty))
                self.alert("warning", note, sym)  # stays on the dashboard until dismissed
                partly.append(note)
        chosen = [(token, pos, amt) for token, pos in list(self.state["positions"].items())
                  if (not symbol or pos.symbol == symbol) and pos.is_open
                  and pos.holds(amt := amounts.get(pos.symbol, 0.0))]
        closed, failed = [], []
        for (_, pos, _), got in zip(chosen, await together(
                self.ex, *(close(*c) for c in chosen), return_exceptions=True)):
            if isinstance(got, BaseException) and not isinstance(got, E.ExchangeError):
                raise got
            if got is None:
                closed.append(pos.symbol)
                continue
            failed.append((pos.symbol, got))
            self.alert("error", words("{symbol}: the close at market was not confirmed ({error}); "
                                      "the positions table shows what the exchange still holds",
                                      symbol=pos.symbol, error=E.said_error(got)), pos.symbol)
        try:
            await self._sync_positions(CycleResult(), self.now_ms())
            if self.guard and closed:
                left = position_amounts(await self.ex.position_risk())
                await self.guard.run(self.state["positions"], left)
        except E.ExchangeError:
            if not failed:
                raise
        if failed:  # (the close's failure says more than a read after it)
            left, first = ", ".join(sym for sym, _ in failed), failed[0][1]
            first.said = words("closed {symbols} at market; not closed: {failed} (see its "
                               "notice)", symbols=", ".join(closed), failed=left) if closed else \
                words("not closed: {failed} (see its notice)", failed=left)
            first.partly = bool(closed)
            raise first
        if not closed:
            return words("no open position of the bot on {symbol}" if symbol else
                         "no open positions of the bot to close", symbol=symbol)
        if partly and len(closed) == 1:
            return partly[0]
        external = [e["symbol"] for e in self.state["external_positions"]]
        if external and not symbol:
            return words("closed {symbols} at market; positions the bot did not open were left "
                         "alone: {external}", symbols=", ".join(closed), external=", ".join(external))
        return words("closed {symbols} at market", symbols=", ".join(closed))
