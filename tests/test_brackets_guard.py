"""BracketGuard against the simulator over HTTP."""
from __future__ import annotations

import asyncio

from conftest import API_KEY, API_SECRET
from mraster.exchange.rest import AsterRest
from mraster.exchange.rules import rules_from_exchange_info
from mraster.execution import ids
from mraster.domain import Position
from mraster.execution.brackets import BracketGuard
from mraster.store import JsonDocument
from mraster.sim.server import Faults


async def open_position(c, sym, rules, token):
    ask = float((await c.book_ticker(sym))["askPrice"])
    qty = rules[sym].round_qty(200 / ask)
    await c.new_order(symbol=sym, side="BUY", type="MARKET", quantity=qty,
                      newClientOrderId=ids.order_id("E", token))
    return Position.from_dict({"symbol": sym, "side": "BUY", "status": "open", "opened_at": 0,
                               "qty": float(qty), "entry": ask, "stop": ask * 0.97,
                               "take_profit": ask * 1.05, "initial_stop": ask * 0.97}, token)


async def amounts(c):
    return {p["symbol"]: float(p["positionAmt"]) for p in await c.position_risk()
            if float(p["positionAmt"])}


def kinds(orders, sym):
    return sorted(ids.bracket_kind(o) for o in orders if o["symbol"] == sym)


def test_guard_protects_restores_cancels_orphans_and_closes_passed_stops(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=4, seed=5)
    events = []

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            syms = list(rules)
            guard = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"),
                                 lambda *a, **k: events.append((a, k)))
            a = await open_position(c, syms[0], rules, "tok-a001")
            positions = {"tok-a001": a}
            # 1. a position without a stop is protected after one pass
            await guard.run(positions, await amounts(c))
            assert kinds(await c.open_orders(), syms[0]) == ["stop", "tp"]
            # 2. a stop cancelled behind the bot's back is restored, without duplicating the TP
            stop = [o for o in await c.open_orders(syms[0]) if ids.bracket_kind(o) == "stop"][0]
            await c.cancel_order(syms[0], order_id=stop["orderId"])
            await guard.run(positions, await amounts(c))
            assert kinds(await c.open_orders(), syms[0]) == ["stop", "tp"]
            # 3. an orphan take-profit of a closed position is cancelled
            b = await open_position(c, syms[1], rules, "tok-b002")
            await guard.run({"tok-b002": b}, await amounts(c), full=False)
            await c.new_order(symbol=syms[1], side="SELL", type="MARKET", quantity=str(b.qty),
                              reduceOnly=True, newClientOrderId="manual-close-1")
            await guard.run(positions, await amounts(c))
            assert kinds(await c.open_orders(), syms[1]) == []
            # 4. price already beyond the intended stop: closed at market
            cpos = await open_position(c, syms[2], rules, "tok-c003")
            cpos.stop = cpos.entry * 1.02  # above the price: a sell stop would trigger now
            await guard.run({"tok-c003": cpos}, await amounts(c), full=False)
            assert syms[2] not in await amounts(c)
            # 5. a hand-placed closePosition stop is respected (no duplicate)
            d = await open_position(c, syms[3], rules, "tok-d004")
            await c.new_order(symbol=syms[3], side="SELL", type="STOP_MARKET",
                              stopPrice=str(rules[syms[3]].round_price(d.entry * 0.9, "down")),
                              closePosition=True, newClientOrderId="my-manual-stop")
            await guard.run({"tok-d004": d}, await amounts(c), full=False)
            assert kinds(await c.open_orders(), syms[3]) == ["stop", "tp"]
    asyncio.run(go())
    assert any(k.get("level") == "warning" and "closed at market" in str(k.get("message", ""))
               for _, k in events)


def test_with_errors_and_a_restart_every_position_ends_protected_once(sim_factory, tmp_path):
    sim, url, app = sim_factory(n=5, seed=9, faults=Faults(seed=2))

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET, read_retries=6) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            positions = {}
            for i, sym in enumerate(rules):
                positions[f"tok-{i:04d}"] = await open_position(c, sym, rules, f"tok-{i:04d}")
            app.state.faults.error_rate = 0.3
            for attempt in range(8):
                guard = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"), clock=lambda: 1e12 + attempt * 1000)
                try:  # a new guard each pass = a restart; the queue file carries the retries
                    await guard.run(positions, await amounts(c))
                except Exception:
                    pass
            app.state.faults.error_rate = 0.0
            await BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"),
                               clock=lambda: 2e12).run(positions, await amounts(c))
            return rules, await c.open_orders()
    rules, orders = asyncio.run(go())
    for sym in rules:
        assert kinds(orders, sym) == ["stop", "tp"], sym


def _environ(env_over: dict) -> dict:
    """The test's environment without its ASTER_ settings, and these."""
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}, **env_over}


def _settings_of(s) -> dict:
    """What ``brackets_guard.py`` needs of the bot's settings: the exchange and the files."""
    return {k: v for k, v in s.to_env().items() if k in (
        "ASTER_PAPER", "ASTER_EXCHANGE_BASE", "ASTER_API_KEY", "ASTER_API_SECRET",
        "ASTER_STATE_FILE", "ASTER_BRACKETS_QUEUE_FILE")}


def _guard(tmp_path, env_over: dict):
    """``brackets_guard.py --once`` in its own process with these settings."""
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.run([sys.executable, str(ROOT / "brackets_guard.py"), "--once"], cwd=tmp_path,
                          env=_environ(env_over), capture_output=True, text=True, timeout=120)


def _stop_passed(s) -> tuple:
    """The state file's first position given a stop the price is already beyond (the guard
    closes it at market): (state document, token, position)."""
    from mraster.files import state_document

    doc = state_document(s["ASTER_STATE_FILE"])
    token, pos = next(iter(doc.read()["positions"].items()))

    def passed(d: dict) -> None:
        p = d["positions"][token]
        p["stop"] = p["entry"] * (10 if p["side"] == "BUY" else 0.1)
    doc.update(passed)
    return doc, token, pos


def test_standalone_once_repairs_a_live_accounts_brackets(sim_factory, tmp_path):
    """The bot opened protected positions, then someone cancelled every bracket on the exchange:
    ``brackets_guard.py --once`` (its own process, over HTTP) puts them back."""
    from conftest import bare_positions

    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    acct = sim.accounts[API_KEY]
    p = _guard(tmp_path, _settings_of(s))
    assert p.returncode == 0, p.stderr
    protected = {(o.symbol, o.type) for o in acct.open_orders()}
    for sym in held:
        assert {(sym, "STOP_MARKET"), (sym, "TAKE_PROFIT_MARKET")} <= protected


def test_standalone_in_paper_mode_says_there_is_nothing_to_repair(tmp_path):
    p = _guard(tmp_path, {"ASTER_PAPER": "true"})
    assert p.returncode == 0 and "the bot guards its simulated positions itself" in p.stderr
    assert not (tmp_path / "brackets_queue.json").exists()


async def guard_with_grace(c, tmp_path, events: list, now: list, alert_after: int):
    """A guard on the clock ``now[0]`` with a 60 s stop grace, its events into ``events``, and
    a position opened on the first symbol: (guard, symbol, positions)."""
    rules = rules_from_exchange_info(await c.exchange_info())
    sym = list(rules)[0]
    guard = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"),
                         lambda *a, **k: events.append(k), alert_after=alert_after,
                         clock=lambda: now[0], stop_grace_s=60)
    return guard, sym, {"tok-a001": await open_position(c, sym, rules, "tok-a001")}


def test_a_position_whose_stop_cannot_be_placed_is_closed_after_the_grace(sim_factory, tmp_path):
    _, url, _ = sim_factory(n=2, seed=5, faults=Faults(reject_types=frozenset({"STOP_MARKET"})))
    events, now = [], [1_000.0]

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            guard, sym, positions = await guard_with_grace(c, tmp_path, events, now, 2)
            assert (await guard.run(positions, await amounts(c)))["failed"] == 1
            now[0] += 30  # within the grace: still open, still retrying, alert raised
            assert (await guard.run(positions, await amounts(c)))["failed"] == 1
            assert sym in await amounts(c)
            assert any("could not be placed after 2 attempts" in str(e.get("message", ""))
                       for e in events)
            now[0] += 40  # 70 s without a stop: closed at market
            done = await guard.run(positions, await amounts(c))
            assert done["closed"] == 1 and sym not in await amounts(c)
            assert JsonDocument(tmp_path / "q.json").read()["items"] == {}
    asyncio.run(go())
    assert any("no stop could be placed within the 60 s grace" in str(e.get("message", ""))
               for e in events)


def test_a_position_that_can_be_neither_protected_nor_closed_is_said_at_once(sim_factory,
                                                                             tmp_path):
    """No stop could be placed within the grace and the exchange refuses the market close too:
    the position stands without a stop and only a person can act. That was in the log file
    only (with many tries before the repair notice, nothing on the page said it); now an error
    notice says it at the first failed close, once, and the close is tried again each pass."""
    _, url, app = sim_factory(n=2, seed=5)
    events, now = [], [1_000.0]

    def stuck() -> list[dict]:
        return [e for e in events if "market close failed too" in str(e.get("message", ""))]

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            guard, sym, positions = await guard_with_grace(c, tmp_path, events, now, 10)
            app.state.faults.reject_types = frozenset({"STOP_MARKET", "MARKET"})
            await guard.run(positions, await amounts(c))
            assert stuck() == [] and sym in await amounts(c)  # within the grace: retried
            for _ in range(2):  # past the grace, the close refused twice: said once
                now[0] += 70
                assert (await guard.run(positions, await amounts(c)))["closed"] == 0
            assert sym in await amounts(c)
            [alert] = stuck()
            assert alert["level"] == "error" and alert["symbol"] == sym
            assert "the position has no stop: close it on the exchange" in str(alert["message"])
            app.state.faults.reject_types = frozenset({"STOP_MARKET"})  # closes go through
            now[0] += 70
            assert (await guard.run(positions, await amounts(c)))["closed"] == 1
            assert sym not in await amounts(c) and guard.close_failures == set()
    asyncio.run(go())


def test_a_bracket_that_triggered_between_the_reads_is_not_replaced_on_a_flat_symbol(
        sim_factory, tmp_path):
    """The cycle reads positions and open orders together; a stop that fills in between leaves
    a position that looks open and a stop that looks missing. The guard confirms the position on
    the exchange before it repairs, so no stop is placed on a flat symbol to wait there for the
    next trade."""
    sim, url, _ = sim_factory(n=4, seed=5)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            sym = list(rules)[0]
            guard = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"))
            pos = await open_position(c, sym, rules, "tok-a001")
            await guard.run({"tok-a001": pos}, await amounts(c))
            held = await amounts(c)  # the cycle's read: the position is there
            # the stop fills (a close at market here) before the open orders are read
            stop = [o for o in await c.open_orders(sym) if ids.bracket_kind(o) == "stop"][0]
            await c.cancel_order(sym, order_id=stop["orderId"])
            await c.new_order(symbol=sym, side="SELL", type="MARKET", quantity=str(pos.qty),
                              reduceOnly=True, newClientOrderId="stop-stand-in-1")
            done = await guard.run({"tok-a001": pos}, held, orders=await c.open_orders())
            return done, kinds(await c.open_orders(), sym)
    done, left = asyncio.run(go())
    assert done["placed"] == 0 and "stop" not in left


def test_passes_running_at_once_keep_each_others_repairs(sim_factory, tmp_path):
    """The entries of one cycle each protect their own position at the same time (and
    ``brackets_guard.py`` may run beside the bot). When two such passes both fail to place a
    bracket, the repair queue keeps both positions: a pass writes what it changed onto the file
    as it is now, not the whole queue it read before the other one wrote."""
    sim, url, _ = sim_factory(n=4, seed=5, faults=Faults(
        reject_types=frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"}), latency_ms=20))
    queue = JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}})

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            syms = list(rules)
            guard = BracketGuard(c, rules, queue)
            a = await open_position(c, syms[0], rules, "tok-a001")
            b = await open_position(c, syms[1], rules, "tok-b002")
            held = await amounts(c)
            return await asyncio.gather(
                guard.run({"tok-a001": a}, held, full=False, new=True),
                guard.run({"tok-b002": b}, held, full=False, new=True))
    done = asyncio.run(go())
    assert [d["failed"] for d in done] == [1, 1]
    items = queue.read()["items"]
    assert set(items) == {"tok-a001", "tok-b002"}
    assert all(i["attempts"] == 1 and "-1116" in i["last_error"] for i in items.values())


def test_a_leftover_that_cannot_be_cancelled_keeps_the_passes_repair_record(sim_factory,
                                                                            tmp_path):
    """One pass: a position's stop is refused, and a closed trade's take-profit left on another
    symbol cannot be cancelled (the exchange does not answer). The pass finishes: the refused
    stop is in the repair queue (its attempts and since when: the stop grace counts from there)
    and the leftover is tried again next pass. A failed cancel used to end the pass before the
    queue was written, so the grace restarted with every such pass."""
    from fault_proxy import FaultProxy, Rule

    sim, url, _ = sim_factory(n=4, seed=5, faults=Faults(reject_types=frozenset({"STOP_MARKET"})))
    queue = JsonDocument(tmp_path / "q.json")

    async def setup() -> tuple[dict, str, str]:
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            held, flat = list(rules)[:2]
            gone = await open_position(c, flat, rules, "tok-b002")  # a trade that closed ...
            await c.new_order(symbol=flat, side="SELL", type="TAKE_PROFIT_MARKET",
                              stopPrice=str(rules[flat].round_price(gone.take_profit)),
                              closePosition=True, newClientOrderId=ids.order_id("T", "tok-b002"))
            await c.new_order(symbol=flat, side="SELL", type="MARKET", quantity=str(gone.qty),
                              reduceOnly=True, newClientOrderId=ids.order_id("X", "tok-b002"))
            return rules, held, flat

    rules, held, flat = asyncio.run(setup())

    async def one_pass(proxy_url: str) -> dict:
        async with AsterRest(proxy_url, API_KEY, API_SECRET) as c:
            guard = BracketGuard(c, rules, queue, clock=lambda: 1_000.0, stop_grace_s=60)
            pos = await open_position(c, held, rules, "tok-a001")  # ... its stop is refused
            return await guard.run({"tok-a001": pos}, await amounts(c))
    with FaultProxy(url) as proxy:
        proxy.set_rules(Rule("DELETE", "/fapi/v1/order", refuse=1.0))
        done = asyncio.run(one_pass(proxy.url))
    assert done["failed"] == 2  # the stop, and the leftover
    item = queue.read()["items"]["tok-a001"]
    assert item["attempts"] == 1 and item["since"] == 1_000.0
    left = [o for o in sim.accounts[API_KEY].open_orders() if o.symbol == flat]
    assert [o.type for o in left] == ["TAKE_PROFIT_MARKET"]  # still there: tried next pass


def test_a_leftover_that_stays_uncancellable_is_said_once_in_a_notice(sim_factory, tmp_path):
    """A closed trade's take-profit that the exchange will not cancel stays on the flat symbol,
    where it would close (at the old trade's level) a position the trader opens by hand. It is
    tried again each pass; after ``alert_after`` passes in a row the page says so, once, in the
    reader's language. It used to be said only in the log file."""
    from fault_proxy import FaultProxy, Rule

    sim, url, _ = sim_factory(n=2, seed=5)
    events: list[dict] = []

    async def setup() -> tuple[dict, str]:
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            flat = next(iter(rules))
            gone = await open_position(c, flat, rules, "tok-b002")
            await c.new_order(symbol=flat, side="SELL", type="TAKE_PROFIT_MARKET",
                              stopPrice=str(rules[flat].round_price(gone.take_profit)),
                              closePosition=True, newClientOrderId=ids.order_id("T", "tok-b002"))
            await c.new_order(symbol=flat, side="SELL", type="MARKET", quantity=str(gone.qty),
                              reduceOnly=True, newClientOrderId=ids.order_id("X", "tok-b002"))
            return rules, flat

    rules, flat = asyncio.run(setup())

    def alerts() -> list[dict]:
        return [e for e in events if "left by a closed trade" in str(e.get("message", ""))]

    def left() -> list[str]:
        return [o.type for o in sim.accounts[API_KEY].open_orders() if o.symbol == flat]

    async def go(proxy: FaultProxy) -> None:
        async with AsterRest(proxy.url, API_KEY, API_SECRET) as c:
            guard = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"),
                                 lambda *a, **k: events.append(k), alert_after=3)

            async def failed() -> int:
                return (await guard.run({}, await amounts(c)))["failed"]
            proxy.set_rules(Rule("DELETE", "/fapi/v1/order", refuse=1.0))
            assert [await failed(), await failed()] == [1, 1]
            assert alerts() == []  # a passing failure is tried again without a notice
            assert [await failed(), await failed()] == [1, 1]
            [alert] = alerts()  # the third pass in a row said it; the fourth did not again
            assert alert["level"] == "error" and alert["symbol"] == flat
            assert alert["message"].template.startswith("{symbol}: a stop or take-profit left")
            assert "after 3 attempts" in str(alert["message"])
            assert left() == ["TAKE_PROFIT_MARKET"]
            proxy.heal()  # the exchange cancels again: the leftover goes, nothing said
            assert await failed() == 0
            assert left() == [] and len(alerts()) == 1 and guard.leftover_failures == {}
    with FaultProxy(url) as proxy:
        asyncio.run(go(proxy))


def test_a_stop_moved_just_before_a_crash_is_never_given_a_used_id_again(sim_factory, tmp_path):
    """The guard moved a stop (new id S1 placed, the old stop S cancelled) and the bot died
    before its state file was written: the restarted bot holds the position as saved before the
    move (its old level, no record of S1). Its stop must end on the exchange, once, and no id is
    sent for a second order. Found by a crash sweep: the restart sent S1 again — the exchange
    refused it as a duplicate of the open S1, the client's look-up took the open S1 for the new
    stop, and the guard then cancelled S1 as the old one: the position stood without a stop; where
    S1 was already cancelled, a second order carried the id S1."""
    sim, url, _ = sim_factory(n=1, seed=5)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            rules = rules_from_exchange_info(await c.exchange_info())
            sym = next(iter(rules))
            pos = await open_position(c, sym, rules, "tok-a001")
            await BracketGuard(c, rules, JsonDocument(tmp_path / "q.json")).run(
                {"tok-a001": pos}, await amounts(c))
            saved = Position.from_dict(pos.to_dict(), "tok-a001")  # the state file's copy
            pos.stop = pos.entry * 0.96  # the move the state file never heard of
            await BracketGuard(c, rules, JsonDocument(tmp_path / "q.json")).run(
                {"tok-a001": pos}, await amounts(c))
            # the restart: the saved position, a new guard; its level back, then moved again
            restarted = BracketGuard(c, rules, JsonDocument(tmp_path / "q.json"))
            await restarted.run({"tok-a001": saved}, await amounts(c))
            after_restart = [o for o in await c.open_orders(sym) if ids.bracket_kind(o) == "stop"]
            saved.stop = saved.entry * 0.955
            await restarted.run({"tok-a001": saved}, await amounts(c))
            stops = [o for o in await c.open_orders(sym) if ids.bracket_kind(o) == "stop"]
            every = [o["clientOrderId"] for o in await c.all_orders(sym)]
            return rules[sym], saved, after_restart, stops, every
    rule, saved, after_restart, stops, every = asyncio.run(go())
    assert [o["stopPrice"] for o in after_restart] == [
        str(rule.round_price(saved.entry * 0.97, "down"))]
    assert [o["stopPrice"] for o in stops] == [str(rule.round_price(saved.stop, "down"))]
    assert len(every) == len(set(every)), sorted(every)


def test_the_standalone_guards_notices_reach_the_dashboard(sim_factory, tmp_path):
    """``brackets_guard.py`` that cannot place a stop says so where the trader looks: its
    notice is kept in the state file and shown on the page with the bot's, in the reader's
    language (it was only printed to the command's own output). The bot's next save keeps it."""
    from conftest import bare_positions
    from fault_proxy import FaultProxy, Rule

    from mraster.dashboard.views import alerts_view
    from mraster.engine.runner import _save, bot_state
    from mraster.files import state_document
    from mraster.words import speaker

    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    with FaultProxy(url) as proxy:  # the exchange refuses every new order
        proxy.set_rules(Rule("POST", "/fapi/v1/order", refuse=1.0))
        p = _guard(tmp_path, {**_settings_of(s), "ASTER_EXCHANGE_BASE": proxy.url,
                              "ASTER_BRACKET_ALERT_AFTER": "1"})
    assert p.returncode == 0, p.stderr
    doc = state_document(s["ASTER_STATE_FILE"])
    notices = [a for a in alerts_view(doc.read()) if a["source"] == "guard"]
    assert {a["symbol"] for a in notices} == held
    for a in notices:
        assert a["level"] == "error" and a["message"].startswith(
            f"brackets_guard.py: {a['symbol']}: stop/take-profit could not be placed after 1 ")
        german = speaker("de")(a["words"]["template"], **a["words"]["params"])
        assert german.startswith(f"brackets_guard.py: {a['symbol']}: Stop/Take-Profit ließ sich "
                                 "nach 1 Versuchen nicht setzen: Die Order wurde gesendet, ihr Ergebnis "
                                 "ist aber unbekannt"), german
        assert "The exchange" not in german  # the client's own sentence too
    _save(doc, bot_state(doc))  # the bot's save writes its own keys only
    assert len([a for a in alerts_view(doc.read()) if a["source"] == "guard"]) == len(held)


def test_the_standalone_guards_market_close_has_ids_of_its_own(sim_factory, tmp_path):
    """``brackets_guard.py`` closes a position whose stop price has passed at market, as the
    bot's guard does; it saves no position, so beside a running bot both counted the same
    attempt from the same state file and could send one client id twice. Its closes are kind
    ``X2`` (the bot's ``X``), booked as the guard's; its notice reaches the page."""
    from conftest import bare_positions

    from mraster.dashboard.views import alerts_view
    from mraster.execution.booking import exit_reason_of, join_fills

    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    doc, token, pos = _stop_passed(s)
    sym = pos["symbol"]
    p = _guard(tmp_path, _settings_of(s))
    assert p.returncode == 0, p.stderr
    acct = sim.accounts[API_KEY]
    assert not acct.positions[sym].amt
    close = acct.by_client_id(sym, ids.order_id("X2", token))
    assert close is not None and close.status == "FILLED"
    assert acct.by_client_id(sym, ids.order_id("X", token)) is None
    fills = join_fills([t for t in acct.trades if t["symbol"] == sym],
                       [o.as_dict() for o in acct.orders.values()])
    assert exit_reason_of(next(f for f in fills if f.kind == "X2")) == "stop"
    assert any(a["symbol"] == sym and "position closed at market" in a["message"]
               for a in alerts_view(doc.read()) if a["source"] == "guard")


def test_the_standalone_guards_second_close_of_a_position_has_ids_of_its_own(sim_factory,
                                                                             tmp_path):
    """``brackets_guard.py --loop`` whose market close the exchange refuses tries again at the
    next pass (after the repair queue's back-off) with a new id (``X2r2`` …), as the bot does:
    it read the attempt count from the bot's state at every pass, so every attempt sent ``mra1-X2-<token>`` again (an
    order that expired unfilled keeps its id on the exchange: a lost answer to the next could
    be looked up as that one)."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT, bare_positions
    from dashboard_helpers import wait_for
    from fault_proxy import FaultProxy

    sim, url, app = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    _, token, pos = _stop_passed(s)
    app.state.faults.reject_types = frozenset({"MARKET"})  # every market close refused
    with FaultProxy(url) as proxy:  # (forwards everything: it records the ids sent)
        def closes() -> list[str]:
            return [c for c in proxy.forwarded_client_ids()
                    if c.startswith("mra1-X2") and c.endswith(token)]
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "brackets_guard.py"), "--loop", "0.2"], cwd=tmp_path,
            env=_environ({**_settings_of(s), "ASTER_EXCHANGE_BASE": proxy.url}), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(closes()) >= 2, timeout=120, what="two close attempts")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    sent = closes()
    assert sent[:2] == [ids.order_id(k, token) for k in ("X2", "X2r2")], sent
    assert len(set(sent)) == len(sent)  # no id sent twice
    assert sim.accounts[API_KEY].positions[pos["symbol"]].amt  # (still open: refused)
