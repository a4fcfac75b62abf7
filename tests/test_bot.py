"""The bot against the simulator over real HTTP on 127.0.0.1 (seeded synthetic market)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import API_KEY, API_SECRET, ROOT, bot_settings
from mraster import settings as st
from mraster.engine.runner import run_async
from mraster.exchange.rest import AsterRest
from mraster.exchange.rules import rules_from_exchange_info
from mraster.execution import ids
from mraster.store import JsonDocument
from mraster.strategy.filters import Snapshot, market_filters, side_filters


settings_for = bot_settings


def brackets_by_symbol(sim):
    acct = sim.accounts[API_KEY]
    out = {}
    for o in acct.open_orders():
        out.setdefault(o.symbol, []).append(ids.bracket_kind(o.to_api()))
    return out


def test_the_chart_shows_the_candles_and_indicators_the_bot_decided_on(sim_factory, tmp_path):
    """After a cycle, a held symbol's chart holds the whole windows the bot judged on both
    timeframes, its RSI ends at the value the decision quotes, the stop line is the position's
    stop, and prices carry the symbol's tick decimals."""
    from mraster.dashboard.views import chart_view
    from mraster.strategy.signals import HTF_WINDOW, LTF_WINDOW, MIN_HTF

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    pos = next(iter(state["positions"].values()))
    sym = pos["symbol"]
    ltf = chart_view(state, sym, s)
    assert len(ltf["candles"]) == LTF_WINDOW and len(ltf["candles"][0]) == 6  # with volume
    assert ltf["interval"] == "5m" and ltf["interval_s"] == 300
    ind = ltf["indicators"]
    assert ind["rsi"][-1][0] == ltf["candles"][-1][0]
    assert ind["rsi"][-1][1] == pytest.approx(state["decisions"][sym]["rsi"], abs=0.006)
    assert len(ind["ema_fast"]) == LTF_WINDOW - 20 and len(ind["ema_slow"]) == LTF_WINDOW - 54
    assert ltf["rsi_bounds"] == {"buy_min": s["ASTER_RSI_BUY_MIN"], "sell_max": s["ASTER_RSI_SELL_MAX"]}
    assert {"kind": "stop", "price": pos["stop"]} in ltf["lines"]
    assert ltf["tick_places"] == sim.rules[sym].price_places == state["ticks"][sym]
    htf = chart_view(state, sym, s, "htf")
    n = len(htf["candles"])  # the simulator's 600 5m candles hold 100 of 30m
    assert MIN_HTF <= n <= HTF_WINDOW and htf["interval"] == s["ASTER_HTF_INTERVAL"]
    assert list(htf["indicators"]) == ["ema_trend"] and len(htf["indicators"]["ema_trend"]) == n - 54


def test_run_once_opens_bracketed_positions_and_records_reasons(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["market_source"] == "live" and state["mode"] == "live"
    assert set(state["decisions"]) == set(sim.market.series)  # a decision for every symbol
    opened = [p for p in state["positions"].values()]
    assert opened, state["decisions"]
    br = brackets_by_symbol(sim)
    for p in opened:
        assert sorted(br[p["symbol"]]) == ["stop", "tp"]
        d = 1 if p["side"] == "BUY" else -1
        assert d * (p["entry"] - p["initial_stop"]) > 0 and d * (p["take_profit"] - p["entry"]) > 0
        assert p["risk_usdt"] <= 10_000 * s["ASTER_RISK_PER_TRADE"] * 1.01
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {"start", "decision", "order", "cycle", "stop"} <= {e["event"] for e in events}


def test_restart_mid_position_keeps_managing_without_duplicates(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    asyncio.run(run_async(s))
    acct = sim.accounts[API_KEY]
    n_orders = len(acct.orders)
    positions = json.loads((tmp_path / "aster_state.json").read_text())["positions"]
    asyncio.run(run_async(s))  # a restarted bot, same state file
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"].keys() == positions.keys()
    assert len(acct.orders) == n_orders  # no new entries, no duplicate brackets
    assert all(d["reason"] == "max_open_symbol" for sym, d in state["decisions"].items()
               if sym in {p["symbol"] for p in positions.values()})


def test_closed_trade_r_uses_the_initial_stop_and_teaches_the_policy(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    asyncio.run(run_async(s))
    before = json.loads((tmp_path / "aster_state.json").read_text())
    # move a stop closer in the state (as a trailing stop would): R must still use the initial one
    tok, pos = next(iter(before["positions"].items()))
    doc = JsonDocument(tmp_path / "aster_state.json")
    doc.update(lambda d: d["positions"][tok].update(stop=(pos["entry"] + pos["initial_stop"]) / 2))
    for _ in range(60):  # 5 hours of market time: brackets trigger
        sim.step(5 * 60_000)
    asyncio.run(run_async(s))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["history"], "no trade closed in 5 hours"
    for t in state["history"]:
        risk = abs(t["entry"] - t["initial_stop"]) * t["qty"]
        assert t["r"] == pytest.approx(t["pnl"] / risk, abs=1e-3)
        assert t["exit"] is not None and t["fees"] > 0
        assert t["reason"] in ("stop", "take_profit")
    assert sum(a["n"] for a in state["policy"]["arms"].values()) == len(state["history"])
    assert brackets_by_symbol(sim).keys() <= {p["symbol"] for p in state["positions"].values()}


def test_filters_name_their_reason():
    s = st.load(environ={}, env_file=Path("/none"))
    ok = Snapshot(bid=99.99, ask=100.01, quote_volume=1e7, mark=100, index=100, funding=0.0)
    assert market_filters(ok, 0.3, s) is None and side_filters(ok, "BUY", s) is None
    assert market_filters(Snapshot(99.99, 100.01, 1e3, 100, 100, 0), 0.3, s) == "min_qvol"
    assert market_filters(Snapshot(99, 101, 1e7, 100, 100, 0), 0.3, s) == "spread"
    assert market_filters(ok, 0.99, s) == "wicky"
    assert side_filters(Snapshot(99.99, 100.01, 1e7, 100, 100, 0.002), "BUY", s) == "funding_long"
    assert side_filters(Snapshot(99.99, 100.01, 1e7, 100, 100, -0.002), "SELL", s) == "funding_short"
    assert side_filters(Snapshot(99.99, 100.01, 1e7, 100.3, 100, 0), "BUY", s) == "oracle_gap"
    assert side_filters(Snapshot(99.99, 100.01, 1e7, 100, 100, 0.0004), "BUY", s) == "non_arb_bias_long"
    assert side_filters(Snapshot(99.99, 100.01, 1e7, 100, 100, -0.0004), "SELL", s) == "non_arb_bias_short"


def _bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    full.update(env)
    return subprocess.run([sys.executable, str(ROOT / "aster_multi_bot.py")], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def test_offline_run_once_falls_back_to_the_simulator_loudly(tmp_path):
    p = _bot({"ASTER_RUN_ONCE": "true", "ASTER_EXCHANGE_BASE": "http://127.0.0.1:9"}, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "WARNING" in p.stderr and "SIMULATOR" in p.stderr
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["market_source"] == "simulator" and state["mode"] == "paper"
    assert state["market_source_why"].startswith("http://127.0.0.1:9 could not be reached")
    assert len(state["decisions"]) == 30 and all(d["reason"] for d in state["decisions"].values())


def test_invalid_setting_and_live_without_keys_exit_with_one_line(tmp_path):
    p = _bot({"ASTER_RUN_ONCE": "true", "ASTER_LEVERAGE": "500"}, tmp_path)
    assert p.returncode == 2 and "ASTER_LEVERAGE" in p.stderr and "[1, 125]" in p.stderr
    p = _bot({"ASTER_RUN_ONCE": "true", "ASTER_PAPER": "false"}, tmp_path)
    assert p.returncode == 2 and "ASTER_API_KEY" in p.stderr


def test_entry_sent_just_before_a_crash_is_adopted_and_protected(sim_factory, tmp_path):
    """The bot saves a pending entry before sending it; after a crash the next start finds the
    order by its client id, adopts the position and protects it. An entry that never left is
    dropped. Nothing is reported as external."""
    sim, url, _ = sim_factory(n=6, seed=11)
    s = settings_for(tmp_path, url, ASTER_MAX_OPEN_GLOBAL=1)

    async def send():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            sym = (await c.exchange_info())["symbols"][0]["symbol"]
            ask = float((await c.book_ticker(sym))["askPrice"])
            rules = rules_from_exchange_info(await c.exchange_info())
            o = await c.new_order(symbol=sym, side="BUY", type="MARKET",
                                  quantity=str(rules[sym].round_qty(300 / ask)),
                                  newClientOrderId=ids.order_id("E", "abc-1f2e"))
            return sym, ask, o
    sym, ask, sent = asyncio.run(send())
    other = [x for x in sim.market.series if x != sym][0]
    pending = {"side": "BUY", "atr": ask * 0.01, "opened_at": sim.now(), "status": "pending",
               "qty": 1.0, "entry": ask, "initial_stop": ask * 0.99, "stop": ask * 0.99,
               "take_profit": ask * 1.016, "risk_usdt": 1.0, "fasttp_at": 0}
    JsonDocument(tmp_path / "aster_state.json").write({"positions": {
        "abc-1f2e": {**pending, "token": "abc-1f2e", "symbol": sym,
                     "entry_client_id": ids.order_id("E", "abc-1f2e")},
        "abd-2e3f": {**pending, "token": "abd-2e3f", "symbol": other,
                     "entry_client_id": ids.order_id("E", "abd-2e3f")}}})
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert list(state["positions"]) == ["abc-1f2e"]
    pos = state["positions"]["abc-1f2e"]
    assert pos["status"] == "open" and pos["entry"] == float(sent["avgPrice"])
    assert pos["qty"] == float(sent["executedQty"])
    assert sorted(brackets_by_symbol(sim)[sym]) == ["stop", "tp"]
    assert state["external_positions"] == [] and not state["alerts"]



def test_skips_explain_themselves_in_plain_words(sim_factory, tmp_path):
    from mraster.strategy.filters import REASONS

    sim, url, _ = sim_factory(n=12, seed=11)
    asyncio.run(run_async(settings_for(tmp_path, url, ASTER_MIN_EDGE_R=0.3)))
    decisions = json.loads((tmp_path / "aster_state.json").read_text())["decisions"]
    skips = [d for d in decisions.values() if d["action"] == "SKIP"]
    assert skips and all(d["why"] == REASONS[d["reason"]] for d in skips)
    for code in ("paused", "max_open_symbol", "max_open_global", "risk_cap", "exposure",
                 "min_notional", "data_error", "few_klines", "no_signal", "trend_misaligned",
                 "policy_skip", "alpha_veto", "order_failed", "no_quote", "edge_r"):
        assert code in REASONS


def test_an_order_below_min_notional_is_skipped_never_rounded_up(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11, balance=2.0)  # 2 USDT: risk-sized orders are tiny
    s = settings_for(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"] == {} and not sim.accounts[API_KEY].orders
    skipped = [d for d in state["decisions"].values() if d["reason"] == "min_notional"]
    assert skipped, state["decisions"]
    assert all(d["notional"] < 5.0 for d in skipped)  # the simulator's min notional is 5 USDT


def test_klines_are_fetched_only_when_a_candle_has_closed(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=6, seed=11)
    s = settings_for(tmp_path, url)
    counts = []

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, s, tmp_path)
            for step in (0, 0, 5 * 60_000):
                if step:
                    sim.step(step)
                before = eng.cache.requests
                await eng.cycle()
                counts.append(eng.cache.requests - before)
    asyncio.run(go())
    evaluated = len(sim.market.series)
    assert counts[0] == 2 * evaluated  # cold: both timeframes for every symbol
    assert counts[1] == 0              # nothing closed since: nothing fetched
    assert evaluated <= counts[2] <= 2 * evaluated  # a 5m candle closed (and maybe an hour)


def test_bracket_failures_become_notices_in_the_state(sim_factory, tmp_path):
    from mraster.sim.server import Faults

    sim, url, _ = sim_factory(n=12, seed=11, faults=Faults(reject_types=frozenset({"STOP_MARKET"})))
    s = settings_for(tmp_path, url, ASTER_BRACKET_ALERT_AFTER="1")
    asyncio.run(run_async(s))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"]
    messages = [a["message"] for a in state["alerts"]]
    assert any("could not be placed after 1 attempts" in m for m in messages), messages
    queue = json.loads((tmp_path / "brackets_queue.json").read_text())["items"]
    assert set(queue) == set(state["positions"])  # every unprotected position is queued


def test_the_stop_grace_runs_on_the_market_clock_so_replays_close_unprotected_positions(sim_factory,
                                                                                      tmp_path):
    """On a replay (the simulator's clock stepped by hand, five minutes a cycle), a position whose
    stop the exchange refuses is closed once the grace has passed in market time — not after a
    minute of this machine's time, which a fast replay never waits for."""
    from mraster.engine.cycle import Engine, position_amounts
    from mraster.sim.server import Faults

    sim, url, _ = sim_factory(n=12, seed=11, faults=Faults(reject_types=frozenset({"STOP_MARKET"})))
    s = settings_for(tmp_path, url, ASTER_STOP_GRACE_SECONDS="60")
    state: dict = {}

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = Engine(c, s, state, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None)
            await eng.cycle()  # entries; their stops are refused (their take-profits are not)
            opened = {p.token: p.symbol for p in state["positions"].values()}
            sim.step(5 * 60_000)  # the next replay step: 300 s of market time later
            await eng.cycle()
            return opened, position_amounts(await c.position_risk())
    opened, held = asyncio.run(go())
    assert opened, "the first cycle should open positions"
    # every unprotected position is gone (closed at market, or by its take-profit); a symbol
    # still held was entered again on the second cycle
    again = {p.symbol for t, p in state["positions"].items() if t not in opened}
    assert not set(opened.values()) & set(held) - again
    closes = [o for sym in opened.values() for o in sim.accounts[API_KEY].symbol_orders(sym)
              if o.to_api()["clientOrderId"].startswith("mra1-X-") and o.status == "FILLED"]
    assert closes, "the grace should have closed positions at market"


def record_requests(monkeypatch) -> list[tuple[str, str, str, str]]:
    """Every request the client sends, as it starts and as it ends: (start|end, method,
    endpoint, symbol and order type)."""
    events: list[tuple[str, str, str, str]] = []
    request = AsterRest._request

    async def seen(self, method, path, params=None, **kw):
        p = params or {}
        what = (method, path.rsplit("/", 1)[-1],
                f"{p.get('symbol') or ''} {p.get('type') or ''}".strip())
        events.append(("start", *what))
        try:
            return await request(self, method, path, params, **kw)
        finally:
            events.append(("end", *what))
    monkeypatch.setattr(AsterRest, "_request", seen)
    return events


def new_engine(c, s, tmp_path):
    """A fresh engine on client ``c``, its repair queue in ``tmp_path``, events dropped."""
    from mraster.engine.cycle import Engine

    return Engine(c, s, {}, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                  lambda *a, **k: None)


@contextlib.asynccontextmanager
async def after_a_cycle(url: str, s, tmp_path, **client):
    """A fresh engine on a client of ``url`` (``client``: its options), after its first (cold)
    cycle over real HTTP; the client stays open inside the block."""
    async with AsterRest(url, API_KEY, API_SECRET, **client) as c:
        eng = new_engine(c, s, tmp_path)
        await eng.cycle()
        yield eng


def one_cycle(s, tmp_path) -> dict:
    """A fresh engine's first (cold) cycle over real HTTP; its state."""
    async def go():
        async with after_a_cycle(s["ASTER_EXCHANGE_BASE"], s, tmp_path) as eng:
            return eng.state
    return asyncio.run(go())


def test_a_cold_cycle_asks_once_and_sends_what_is_independent_together(sim_factory, tmp_path,
                                                                        monkeypatch):
    """A start's first cycle waits on the network, so nothing it can ask together waits for
    another answer: the symbols' rules with the quotes, positions and account; a symbol's two
    timeframes; and the clock is synchronised once for all the signed requests that go out
    together (requests seen by the client over real HTTP)."""
    sim, url, _ = sim_factory(n=12, seed=11)
    events = record_requests(monkeypatch)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    assert state["telemetry"]["evaluated"] >= 10
    starts = [e for e in events if e[0] == "start"]
    assert sum(e[2] == "time" for e in starts) == 1
    at = {e: k for k, e in enumerate(events)}
    rules, quotes = ("GET", "exchangeInfo", ""), ("GET", "24hr", "")
    assert at[("start", *rules)] < at[("end", *quotes)] and at[("start", *quotes)] < at[("end", *rules)]
    klines = [e for e in events if e[2] == "klines"]
    for sym in {e[3] for e in klines}:
        mine = [e[0] for e in klines if e[3] == sym]
        assert mine == ["start", "start", "end", "end"], sym  # both timeframes in flight at once


def test_a_closed_trade_is_booked_from_reads_sent_together(sim_factory, tmp_path, monkeypatch):
    """Booking a closed position reads its fills, its orders and its funding: independent
    reads, in flight together (requests seen by the client over real HTTP)."""
    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    events = record_requests(monkeypatch)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, s, tmp_path)
            await eng.cycle()
            pos = next(iter(eng.state["positions"].values()))
            await c.new_order(symbol=pos.symbol, side=pos.side.opposite.value, type="MARKET",
                              quantity=str(pos.qty), reduceOnly="true",
                              newClientOrderId="by-hand-close-2")  # the user, on the exchange
            events.clear()
            await eng.cycle()
            return pos.symbol, eng.state
    sym, state = asyncio.run(go())
    assert [h["symbol"] for h in state["history"]] == [sym]
    reads = [e[0] for e in events if e[2] in ("userTrades", "allOrders", "income") and e[3] == sym]
    assert reads[:3] == ["start"] * 3 and len(reads) == 6  # all three asked before any answer


def test_a_new_positions_stop_and_take_profit_leave_together_right_after_the_fill(
        sim_factory, tmp_path, monkeypatch):
    """The time between an entry's fill and its stop is time without protection. The symbol's
    open orders are read while the entry is in flight, and the stop and the take-profit go out
    together as soon as the fill is known (their ids are new: nothing to look up first) —
    requests seen by the client over real HTTP, in the order they started and ended."""
    sim, url, _ = sim_factory(n=12, seed=11)
    events = record_requests(monkeypatch)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    assert state["positions"], "the cycle should open positions"
    for pos in state["positions"].values():
        sym = pos.symbol
        mine = [e for e in events if e[3].split(" ")[0] == sym]
        at = {e: k for k, e in enumerate(mine)}
        entry, book = ("POST", "order", f"{sym} MARKET"), ("GET", "openOrders", sym)
        stop, tp = ("POST", "order", f"{sym} STOP_MARKET"), ("POST", "order", f"{sym} TAKE_PROFIT_MARKET")
        assert at[("start", *book)] < at[("end", *entry)]  # read while the entry was in flight
        assert at[("end", *entry)] < at[("start", *stop)] and at[("end", *entry)] < at[("start", *tp)]
        assert max(at[("start", *stop)], at[("start", *tp)]) < min(at[("end", *stop)], at[("end", *tp)])
        assert not [e for e in mine if e[1:3] == ("GET", "order")]  # no look-up of new ids
        assert {o.type for o in sim.accounts[API_KEY].open_orders() if o.symbol == sym} == \
            {"STOP_MARKET", "TAKE_PROFIT_MARKET"}


def test_a_new_positions_fee_rate_and_funding_are_read_with_the_cycles_closing_reads(
        sim_factory, tmp_path, monkeypatch):
    """Verifying a new position's protection needs its fee rate and the funding so far. They
    are asked together with the reads that follow the entries, not in a round trip of their own
    after them (it was the last one of a cold start) — requests seen over real HTTP, in the
    order they started and ended; every new position is still verified, with its fee."""
    sim, url, _ = sim_factory(n=12, seed=11)
    events = record_requests(monkeypatch)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    assert state["positions"], "the cycle should open positions"
    closing = [("GET", "positionRisk", ""), ("GET", "openOrders", ""), ("GET", "account", "")]
    last = {e: k for k, e in enumerate(events)}  # the closing reads are the last of their kind
    sent = max(last[("start", *r)] for r in closing)
    answered = min(last[("end", *r)] for r in closing)
    fees = [k for k, e in enumerate(events) if e[:3] == ("start", "GET", "commissionRate")]
    assert sorted(e[3] for e in events if e[:3] == ("start", "GET", "commissionRate")) == \
        sorted(p.symbol for p in state["positions"].values())  # once per new symbol
    funding = [k for k, e in enumerate(events) if e[:3] == ("start", "GET", "income")]
    assert len(funding) == 1
    ended = [k for k, e in enumerate(events) if e[0] == "end" and e[2] in (
        "commissionRate", "income")]
    for k in fees + funding:  # in flight together: every one of them left before any came back
        assert k < answered and sent < min(ended), (k, sent, answered)
    for pos in state["positions"].values():
        assert pos.protection["status"] == "ok" and "at_risk" in pos.protection, pos.symbol


def test_a_warm_cycle_after_the_pause_between_cycles_reuses_the_open_connections(
        sim_factory, tmp_path):
    """A new connection costs a TCP and a TLS handshake before its request leaves: two round
    trips or more on a real exchange. The bot's connections used to expire after 5 s idle, so
    after every pause between cycles (30 s by default) each warm cycle opened its six
    connections again. They now outlive the pause: the exchange (the simulator, keeping idle
    connections 75 s like a common front end) sees the second cycle's requests arrive on the
    connections the first one opened. The 6 s pause is the scenario itself (longer than the old
    expiry, shorter than the scan interval set here), not a wait for something to happen."""
    from mraster.engine.runner import make_exchange

    arrivals: list[tuple[str, int]] = []  # (path, the client's port: one per connection)

    def watch(app):
        async def seen(scope, receive, send):
            if scope["type"] == "http":
                arrivals.append((scope["path"], scope["client"][1]))
            await app(scope, receive, send)
        return seen

    _, url, _ = sim_factory(n=12, seed=11, wrap=watch)
    s = settings_for(tmp_path, url, ASTER_SCAN_INTERVAL_SECONDS=10)

    async def go() -> None:
        ex, _ = await make_exchange(s, {})
        async with ex:
            eng = new_engine(ex, s, tmp_path)
            await eng.cycle()
            await asyncio.sleep(6.0)
            first = len(arrivals)
            await eng.cycle()
            assert eng.state["telemetry"]["evaluated"] >= 10
            return first
    first = asyncio.run(go())
    opened = {port for _, port in arrivals[:first]}
    later = arrivals[first:]
    assert len(later) >= 6, later  # the warm cycle's reads
    assert {port for _, port in later} <= opened, [p for p in later if p[1] not in opened]


def test_the_guards_pass_does_not_wait_for_a_new_positions_fee_rate(sim_factory, tmp_path,
                                                                     monkeypatch):
    """The new positions' fee rates leave with the reads after the entries, but only their
    verification needs them: a slow fee-rate answer (held here by the simulator over real HTTP
    until the guard's pass has begun, 8 s at most) must not hold up the guard, which repairs
    every position's brackets. The old code awaited the fee rates with the closing reads, so
    the guard began only after the answer. The guard's own code runs unchanged (it is only
    watched). The answers wait on the simulator's own loop: a thread each would take the
    threads its signed requests run in (six on two cores), and with six new positions the
    closing reads themselves waited out the 8 s."""
    import contextlib
    import threading

    from mraster.execution.brackets import BracketGuard

    seen: list[str] = []
    asked = threading.Event()
    hold: dict = {}  # the simulator's loop and the event its held answers wait for

    def watch(app):
        async def held(scope, receive, send):
            if scope["type"] == "http" and scope["path"].endswith("/commissionRate"):
                seen.append("fee asked")
                if not hold:
                    hold.update(loop=asyncio.get_running_loop(), began=asyncio.Event())
                asked.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(hold["began"].wait(), 8)
                seen.append("fee answered")
            await app(scope, receive, send)
        return held

    run = BracketGuard.run

    async def watched(self, *a, **k):
        if asked.is_set():  # (the hold is set up before the flag)
            seen.append("guard began")
            hold["loop"].call_soon_threadsafe(hold["began"].set)
        return await run(self, *a, **k)
    monkeypatch.setattr(BracketGuard, "run", watched)
    _, url, _ = sim_factory(n=12, seed=11, wrap=watch)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    assert state["positions"], "the cycle should open positions"
    assert seen.index("guard began") < seen.index("fee answered"), seen
    for pos in state["positions"].values():  # verified with the fee, once it came
        assert pos.protection["status"] == "ok" and not pos.protection["fee_assumed"], pos.symbol


def test_an_odd_funding_answer_with_the_closing_reads_stops_neither_the_cycle_nor_the_guard(
        sim_factory, tmp_path, monkeypatch):
    """The funding so far is asked with the reads that follow the entries, before the guard: an
    answer of the wrong shape (valid JSON, not income rows) is left aside, and the cycle still
    protects and verifies every new position. Mocked: only the income read's answer (the
    simulator answers well-formed rows); everything else goes over real HTTP."""
    sim, url, _ = sim_factory(n=12, seed=11)
    income = AsterRest.income

    async def odd(self, *a, **k):
        await income(self, *a, **k)  # sent and answered as usual, then misread
        return {"code": 0, "rows": "not a list of rows"}
    monkeypatch.setattr(AsterRest, "income", odd)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    assert state["positions"], "the cycle should open positions"
    for pos in state["positions"].values():
        assert pos.protection["status"] == "ok" and "funding" not in pos.protection, pos.symbol
        assert {o.type for o in sim.accounts[API_KEY].open_orders() if o.symbol == pos.symbol} \
            == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}


def test_a_cycle_after_a_signal_candle_closed_asks_up_to_sixteen_windows_at_once(
        sim_factory, tmp_path, monkeypatch):
    """After a signal candle closes, every symbol's signal timeframe is asked again (one request
    each; the higher timeframe's candle is still forming). Eight symbols at a time left half of
    the sixteen request slots unused (200 symbols: 25 round trips instead of 13); the limit now
    counts requests (requests seen by the client over real HTTP)."""
    from mraster.engine.market_data import KLINES_IN_FLIGHT

    sim, url, _ = sim_factory(n=20, seed=11)
    now = sim.market.clock.now_ms()
    sim.step((7 * 60_000 - now % 1_800_000) % 1_800_000)  # 7 min into a half hour
    events = record_requests(monkeypatch)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, settings_for(tmp_path, url), tmp_path)
            await eng.cycle()
            del events[:]
            sim.step(5 * 60_000)  # a 5m candle closed; the 30m one has not
            await eng.cycle()
            return eng.state["telemetry"]
    tel = asyncio.run(go())
    assert tel["evaluated"] == 20
    klines = [e for e in events if e[2] == "klines"]
    assert sorted(e[3] for e in klines if e[0] == "start") == sorted(
        sym for sym in sim.rules if sym.endswith("USDT"))  # each symbol once
    flight = most = 0
    for e in klines:
        flight += 1 if e[0] == "start" else -1
        most = max(most, flight)
    assert 8 < most <= KLINES_IN_FLIGHT, most


def test_the_ten_minute_clock_sync_goes_out_beside_a_warm_cycles_signed_reads(sim_factory,
                                                                               tmp_path):
    """The clock offset is renewed every ten minutes. The warm cycle that found it due waited a
    round trip for the sync before its signed reads left; now they leave at once, signed with
    the offset held (a clock drifts milliseconds in ten minutes), beside the sync. The
    simulator over real HTTP holds its answer to the sync until the account read has arrived
    (8 s at most, under the client's timeout): the old code sent that read only after the
    answer. The ten minutes are skipped by ageing the last sync, as a test cannot wait them."""
    import contextlib

    seen: list[str] = []  # what the exchange saw, in order
    hold = {"on": False}

    def watch(app):
        arrived = asyncio.Event()  # (bound to the server's loop on first use)

        async def seen_by_exchange(scope, receive, send):
            if scope["type"] == "http" and hold["on"]:
                seen.append(scope["path"])
                if scope["path"].endswith("/account"):
                    arrived.set()
                elif scope["path"].endswith("/time"):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(arrived.wait(), 8)
                    seen.append("time answered")
            await app(scope, receive, send)
        return seen_by_exchange

    _, url, _ = sim_factory(n=12, seed=11, wrap=watch)
    s = settings_for(tmp_path, url)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, s, tmp_path)
            await eng.cycle()
            c._synced_at -= 601
            hold["on"] = True
            await eng.cycle()
            if c._resync is not None:  # the sync beside the reads: on a loaded machine its
                await c._resync        # answer may come after the cycle's last read
            return c.stats["resyncs"], eng.state["telemetry"]
    resyncs, tel = asyncio.run(go())
    account = next(k for k, p in enumerate(seen) if p.endswith("/account"))
    assert account < seen.index("time answered"), seen
    assert resyncs >= 2 and tel["evaluated"] >= 10  # synced, and the cycle went through


def test_a_fee_rate_or_funding_the_exchange_does_not_answer_is_said_on_the_position_row(
        sim_factory, tmp_path):
    """The money at risk counts the account's fee rate and the funding so far. When the
    exchange does not answer them (refused here by the fault proxy), the figure used the
    default fee and no funding and only the log said so. The position's row now says the fee is
    assumed and since when the funding is unread, and the next cycle that reads them clears
    both (simulator over real HTTP, behind the fault proxy)."""
    from fault_proxy import FaultProxy, Rule

    from mraster.dashboard.views import positions_view
    from mraster.engine.protection_watch import DEFAULT_FEE
    from mraster.sim.matching import TAKER_FEE

    _, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go(proxy):
        async with AsterRest(proxy.url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, s, tmp_path)
            proxy.set_rules(Rule("GET", "/fapi/v1/commissionRate", refuse=1.0),
                            Rule("GET", "/fapi/v1/income", refuse=1.0))
            await eng.cycle()
            first = eng.state["telemetry"]["time"], positions_view(eng.state)
            proxy.heal()
            await eng.cycle()
            return first, positions_view(eng.state)

    with FaultProxy(url) as proxy:
        (when, unread), read = asyncio.run(go(proxy))
        fee_refused = proxy.count("refuse", "GET", "/fapi/v1/commissionRate")
        funding_refused = proxy.count("refuse", "GET", "/fapi/v1/income")
    assert unread, "the cycle should open positions"
    # each read asked once in the failing cycle (with its retries), not again per row
    assert funding_refused and fee_refused == len(unread) * funding_refused
    for row in unread:
        p = row["protection"]
        assert p["status"] == "ok" and p["at_risk"] is not None, row["symbol"]
        assert p["fee_assumed"] and p["fee_rate"] == DEFAULT_FEE, row["symbol"]
        assert p["funding_unread_since"] == when, row["symbol"]
    for row in read:
        p = row["protection"]
        assert not p["fee_assumed"] and p["fee_rate"] == pytest.approx(TAKER_FEE), row["symbol"]
        assert p["funding_unread_since"] is None, row["symbol"]


def test_a_cycles_entries_go_out_together_not_one_after_the_other(sim_factory, tmp_path,
                                                                     monkeypatch):
    """Each entry used to wait for the one before it (leverage, order, brackets: three round
    trips each, 18 for a cold start with six). The margin mode and leverage of every entry
    that will go out are set together, each order leaves as soon as it is decided, and every
    position still gets its stop and take-profit — requests seen over real HTTP, against a
    simulator answering after 200 ms: deciding the later entries must not outlast the first
    entry's round trip, and 30 ms was too short for that on a loaded machine (six entries,
    the simulator answering in a thread of this process)."""
    from mraster.sim.server import Faults

    sim, url, _ = sim_factory(n=12, seed=11, faults=Faults(latency_ms=200))
    events = record_requests(monkeypatch)
    state = one_cycle(settings_for(tmp_path, url), tmp_path)
    opened = {p.symbol for p in state["positions"].values()}
    assert len(opened) >= 2, "the cycle should open several positions"

    def at(kind: str, method: str, endpoint: str, suffix: str = "") -> list[int]:
        return [k for k, e in enumerate(events) if e[0] == kind and e[1:3] == (method, endpoint)
                and e[3].endswith(suffix)]
    entries = (at("start", "POST", "order", " MARKET"), at("end", "POST", "order", " MARKET"))
    assert len(entries[0]) == len(opened)
    assert max(entries[0]) < min(entries[1])  # every entry left before the first answer
    levers = (at("start", "POST", "leverage"), at("end", "POST", "leverage"))
    assert {events[k][3] for k in levers[0]} == opened  # set for the trades made, only
    assert max(levers[0]) < min(levers[1])
    acct = sim.accounts[API_KEY]
    for sym in opened:
        assert {o.type for o in acct.open_orders() if o.symbol == sym} == \
            {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    assert not [p for p in state["positions"].values() if p.protection.get("repairs")]


def test_a_failure_deciding_a_later_entry_leaves_the_earlier_one_protected(sim_factory,
                                                                           tmp_path,
                                                                           monkeypatch):
    """An entry already on its way when deciding the next one fails (a bug, a full disk) is
    finished first: it fills and gets its stop and take-profit in this cycle, instead of being
    cut off mid-flight and left to the next start's reconciliation. Stands in for the failure
    by making the liquidation check raise for the second entry (nothing else here is mocked)."""
    from mraster.engine.executor import Executor
    from mraster.sim.server import Faults

    sim, url, _ = sim_factory(n=12, seed=11, faults=Faults(latency_ms=30))
    s = settings_for(tmp_path, url)
    check = Executor._stop_before_liquidation
    calls: list[str] = []

    def failing_second(self, sym, *a, **k):
        calls.append(sym)
        if len(calls) == 2:
            raise RuntimeError("boom while deciding the second entry")
        return check(self, sym, *a, **k)
    monkeypatch.setattr(Executor, "_stop_before_liquidation", failing_second)

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = new_engine(c, s, tmp_path)
            with pytest.raises(RuntimeError, match="boom"):
                await eng.cycle()
            return eng.state
    state = asyncio.run(go())
    first = calls[0]
    acct = sim.accounts[API_KEY]
    held = acct.positions.get(first)
    assert held is not None and held.amt != 0, "the first entry was cut off"
    assert {o.type for o in acct.open_orders() if o.symbol == first} == \
        {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    assert [p.status.value for p in state["positions"].values() if p.symbol == first] == ["open"]


@pytest.mark.parametrize("times", ["2.5", "12.5"])
def test_a_position_larger_than_the_largest_market_order_is_closed_in_pieces(sim_factory,
                                                                             tmp_path, times):
    """The exchange lowered its largest market order below a position the bot holds (or the
    bot adopted a larger one): Close… sent one order for the whole size, refused with -4005
    every time. It now closes in pieces each within the limit, each with an id of its own,
    and books one trade from all their fills (simulator over real HTTP). More than ten
    pieces' worth: ten go out, and the answer and a notice say what is left."""
    import dataclasses
    from decimal import Decimal

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go():
        async with after_a_cycle(url, s, tmp_path) as eng:
            pos = next(iter(eng.state["positions"].values()))
            rules = sim.rules[pos.symbol]
            limit = rules.round_qty(Decimal(str(pos.qty)) / Decimal(times), market=True)
            sim.rules[pos.symbol] = dataclasses.replace(rules, market_max_qty=limit)
            eng._rules_at -= 7200  # the bot reads the symbols' rules again (hourly)
            said = await eng.close_positions(pos.symbol)
            return pos, limit, said, eng.state
    pos, limit, said, state = asyncio.run(go())
    acct = sim.accounts[API_KEY]
    pieces = [o for o in acct.orders.values() if o.symbol == pos.symbol and o.type == "MARKET"
              and o.clientOrderId != pos.entry_client_id]
    assert all(Decimal(str(o.origQty)) <= limit for o in pieces)
    kinds = sorted((o.clientOrderId.split("-")[1] for o in pieces), key=lambda k: (len(k), k))
    if times == "2.5":
        assert str(said) == f"closed {pos.symbol} at market"
        assert acct.positions[pos.symbol].amt == 0
        assert kinds == ["X1", "X1p2", "X1p3"]
        [trade] = [h for h in state["history"] if h["symbol"] == pos.symbol]
        assert trade["reason"] == "manual" and trade["qty"] == pytest.approx(pos.qty)
    else:
        left = abs(acct.positions[pos.symbol].amt)
        assert kinds == ["X1"] + [f"X1p{k}" for k in range(2, 11)]
        assert left == pytest.approx(pos.qty - 10 * float(limit))
        assert str(said).startswith(f"{pos.symbol}: {float(limit * 10):g} of ") and \
            str(said).endswith("close again for the rest")
        assert state["alerts"][-1]["words"]["template"] == said.template


def test_a_second_close_of_what_is_left_never_reuses_the_first_closes_ids(sim_factory,
                                                                         tmp_path):
    """A first Close… left part of a position open (more than ten times the largest market
    order). The second Close… sent the same ids (``X1``, ``X1p2``, …); when its answers were
    lost, the look-up by id found the first close's filled orders and reported the second as
    done, while nothing had reached the exchange. Each close now has ids of its own: the lost
    one stays unknown (an error, the rest still open), and the next closes the rest, no id
    ever reaching the exchange twice (simulator over real HTTP, behind the fault proxy)."""
    import dataclasses
    from decimal import Decimal

    from fault_proxy import FaultProxy, Rule

    from mraster.exchange import errors as E

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go(proxy):
        async with after_a_cycle(proxy.url, s, tmp_path, consistency_s=0.05) as eng:
            acct = sim.accounts[API_KEY]
            pos = next(iter(eng.state["positions"].values()))
            rules = sim.rules[pos.symbol]
            limit = rules.round_qty(Decimal(str(pos.qty)) / Decimal("12.5"), market=True)
            sim.rules[pos.symbol] = dataclasses.replace(rules, market_max_qty=limit)
            eng._rules_at -= 7200  # the bot reads the symbols' rules again (hourly)
            await eng.close_positions(pos.symbol)
            left = abs(acct.positions[pos.symbol].amt)
            proxy.set_rules(Rule("POST", "/fapi/v1/order", refuse=1.0))
            with pytest.raises(E.OrderStatusUnknown):
                await eng.close_positions(pos.symbol)
            assert abs(acct.positions[pos.symbol].amt) == pytest.approx(left)
            proxy.heal()
            said = await eng.close_positions(pos.symbol)
            return pos, said, acct, eng.state

    with FaultProxy(url) as proxy:
        pos, said, acct, state = asyncio.run(go(proxy))
        sent = proxy.forwarded_client_ids()
    assert str(said) == f"closed {pos.symbol} at market"
    assert acct.positions[pos.symbol].amt == 0
    assert len(sent) == len(set(sent)), sorted(sent)
    assert {c.split("-")[1] for c in sent if "-X1" in c} >= {"X1", "X1p10", "X1r3", "X1r3p3"}
    [trade] = [h for h in state["history"] if h["symbol"] == pos.symbol]  # booked from all fills
    assert trade["reason"] == "manual" and trade["qty"] == pytest.approx(pos.qty)


def test_a_shadow_whose_candles_cannot_be_read_is_dropped_once_it_would_have_expired(
        sim_factory, tmp_path):
    """A vetoed signal's symbol was delisted (its klines refused): its shadow used to be
    asked for every cycle, for ever. It waits as long as it could still settle, then goes,
    teaching nothing (simulator over real HTTP)."""
    from mraster import shadows

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go():
        async with after_a_cycle(url, s, tmp_path) as eng:
            now, five = eng.market_ms, 300_000
            old, fresh = (shadows.open_shadow("GONEUSDT", "BUY", t, 1.0, 0.01, 0.0,
                                              [0.0] * len(eng.policy.names), s)
                          for t in (now - (shadows.MAX_AGE + 3) * five, now - 2 * five))
            eng.shadows[:] = [old, fresh]
            learned = eng.policy.alpha_model.count
            await eng.cycle()
            return eng.shadows, fresh, learned, eng.policy.alpha_model.count
    left, fresh, before, after = asyncio.run(go())
    assert left == [fresh] and after == before


def test_a_restarted_bot_goes_on_following_the_vetoed_signals_it_followed(sim_factory,
                                                                          tmp_path):
    """The shadows of vetoed signals lived in memory only: a restart (an update, a reboot) forgot
    those still open and the alpha model never learned how they ended. They are saved with the
    state each cycle and taken over by the next start; one a hand edit broke, or with another
    version's features, is left out (simulator over real HTTP, the bot's own state file)."""
    from mraster import shadows
    from mraster.engine.cycle import Engine
    from mraster.engine.runner import _save, bot_state
    from mraster.files import state_document

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    doc = state_document(tmp_path / "aster_state.json")

    async def before_restart():
        async with after_a_cycle(url, s, tmp_path) as eng:
            sym = next(iter(eng.state["decisions"]))
            price = sim.market.price_at(sym, sim.market.clock.now_ms())
            # a stop below zero and a target at four times the price: open for many candles
            sh = shadows.open_shadow(sym, "BUY", eng.market_ms - 2 * 300_000, price, price, 0.0,
                                     [0.5] * len(eng.policy.names), s)
            eng.shadows[:] = [sh]
            await eng.cycle()
            _save(doc, eng.state)
            return list(eng.shadows)

    followed = asyncio.run(before_restart())
    assert len(followed) == 1
    doc.update(lambda d: d["shadows"].extend([{"symbol": "BROKEN"},
                                              {**followed[0], "x": [0.5, 0.5]}]))

    async def after_restart():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = Engine(c, s, bot_state(doc),
                         JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None)
            taken_over = list(eng.shadows)
            await eng.cycle()
            return taken_over, list(eng.shadows), eng.state["telemetry"]["learning"], \
                eng.state["alerts"]

    taken_over, still, learning, alerts = asyncio.run(after_restart())
    assert taken_over == followed and still == followed  # followed on, not started afresh
    assert learning["shadows"] == 1
    # the two broken ones are said on the page, not only in a log
    assert any(a["message"].startswith("2 vetoed signals saved in the state file could not be "
                                       "read") for a in alerts)


def test_every_saved_state_carries_the_price_decimals_of_its_positions(sim_factory, tmp_path):
    """The state is saved before each entry leaves, mid-cycle; the page draws what it reads,
    and a position (and its chart) read from such a save had no tick decimals yet on the first
    cycle (they came with the cycle's last save): the chart kept six decimals. Every save now
    carries the decimals of every position it holds."""
    from mraster.engine.cycle import Engine

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    saved: list[tuple[set, set]] = []

    async def go():
        async with AsterRest(url, API_KEY, API_SECRET) as c:
            eng = Engine(c, s, {}, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None,
                         save=lambda: saved.append(({p.symbol for p in eng.state["positions"].values()},
                                                    set(eng.state.get("ticks", {})))))
            await eng.cycle()
    asyncio.run(go())
    assert saved, "the cycle should save before its entries"
    assert all(held <= ticks for held, ticks in saved), saved


def test_a_restarted_bot_sets_leverage_and_margin_mode_only_where_they_differ(sim_factory,
                                                                             tmp_path):
    """The exchange reports each symbol's leverage and margin mode; where they already are the
    user's, a restarted bot's entries do not set them again (requests counted on the wire)."""
    from conftest import API_KEY
    from fault_proxy import FaultProxy

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    asyncio.run(run_async(s))  # not counted: the first run learns nothing about an empty account
    acct = sim.accounts[API_KEY]
    for sym in sim.market.series:  # the user's values, everywhere, as after earlier sessions
        acct.leverage[sym] = s["ASTER_LEVERAGE"]
        acct.margin_type[sym] = "isolated"
    for o in acct.open_orders():
        o.status = "CANCELED"
    held = {sym for sym, p in acct.positions.items() if p.amt}
    for sym in held:  # flat again, by hand
        acct.positions[sym].amt = 0.0
    (tmp_path / "aster_state.json").unlink()
    with FaultProxy(url) as proxy:
        asyncio.run(run_async(settings_for(tmp_path, proxy.url)))
        entries = [c for c in proxy.forwarded_client_ids() if ids.parse(c) and ids.parse(c)[0] == "E"]
        assert entries, "no entry in the second run"
        assert proxy.count("forward", "POST", "/fapi/v1/leverage") == 0
        assert proxy.count("forward", "POST", "/fapi/v1/marginType") == 0


def test_brackets_left_by_a_closed_trade_are_cancelled_before_the_next_entry_there(sim_factory,
                                                                                   tmp_path,
                                                                                   monkeypatch):
    """A position closed by hand on the exchange leaves its stop and take-profit behind; both
    act on whatever position the symbol holds (closePosition). A new entry on that symbol must
    cancel them first — requests seen on the wire, in order — or the old trade's levels would
    close the new one. The two cancels go out together."""
    from fault_proxy import FaultProxy

    from mraster.engine.cycle import Engine
    from mraster.engine.reconciler import CycleResult

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    state: dict = {}

    async def go(proxy):
        async with AsterRest(proxy.url, API_KEY, API_SECRET) as c:
            eng = Engine(c, s, state, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None)
            await eng.cycle()
            acct = sim.accounts[API_KEY]
            pos = next(iter(state["positions"].values()))
            sym, side = pos.symbol, pos.side.value
            old = {o.clientOrderId for o in acct.open_orders() if o.symbol == sym}
            assert len(old) == 2
            await c.new_order(symbol=sym, side=pos.side.opposite.value, type="MARKET",
                              quantity=str(acct.positions[sym].amt.__abs__()), reduceOnly="true",
                              newClientOrderId="by-hand-close-1")  # the user, on the exchange
            await eng._sync_positions(CycleResult(), eng.market_ms)
            assert not any(p.symbol == sym for p in state["positions"].values())
            state["cooldowns"].pop(sym, None)
            first = len(proxy.seen)
            opened, said = await eng.manual_entry(sym, side)
            return sym, old, opened, said, proxy.seen[first:]

    events = record_requests(monkeypatch)
    with FaultProxy(url) as proxy:
        sym, old, opened, said, seen = asyncio.run(go(proxy))
    assert opened, said
    deletes = [e[0] for e in events if e[1] == "DELETE" and e[3] == sym]
    assert deletes == ["start", "start", "end", "end"]  # in flight together
    calls = [(x.method, x.query.get("newClientOrderId") or x.query.get("orderId")) for x in seen
             if x.path.endswith("/order") and x.method in ("POST", "DELETE")]
    entry = next(i for i, (m, cid) in enumerate(calls) if m == "POST" and ids.parse(cid or "")
                 and ids.parse(cid)[0] == "E")
    cancels = [i for i, (m, _) in enumerate(calls) if m == "DELETE"]
    assert len(cancels) == 2 and max(cancels) < entry, calls
    now = {o.clientOrderId for o in sim.accounts[API_KEY].open_orders() if o.symbol == sym}
    assert not now & old and len(now) == 2  # the new trade's own two brackets, nothing older


def test_a_warm_cycle_reads_positions_orders_and_account_once(sim_factory, tmp_path):
    """A cycle in which no candle closed and no entry went out asks the exchange for each thing
    once (requests counted on the wire): the quotes, the positions, the account and the open
    orders; the guard and the equity curve use those reads."""
    from collections import Counter

    from fault_proxy import FaultProxy

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go(proxy):
        async with after_a_cycle(proxy.url, s, tmp_path) as eng:
            assert eng.state["positions"], "the cold cycle should open positions"
            first = len(proxy.seen)
            await eng.cycle(paused=True)
            return proxy.seen[first:], eng.state
    with FaultProxy(url) as proxy:
        seen, state = asyncio.run(go(proxy))
    asked = Counter((x.method, x.path, x.query.get("symbol")) for x in seen)
    assert all(n == 1 for n in asked.values()), asked
    assert {p for _, p, _ in asked} == {"/fapi/v1/ticker/24hr", "/fapi/v1/ticker/bookTicker",
                                        "/fapi/v1/premiumIndex", "/fapi/v2/positionRisk",
                                        "/fapi/v2/account", "/fapi/v1/openOrders"}, asked
    assert state["telemetry"]["equity"] > 0 and len(state["equity_curve"]) == 2


def test_flatten_all_closes_every_position_it_can_when_one_close_fails(sim_factory, tmp_path):
    """*Flatten all* with the first position's close refused by the exchange (behind the fault
    proxy, over real HTTP): every other position is closed and booked all the same, the one
    left keeps its stop and take-profit, a notice names it, and the command's answer names what
    was closed and what was not. The closes went one after the other and stopped at the first
    failure, leaving every position after it open; the answer then named only the endpoint that
    failed ("failed: … (order)"), not a symbol."""
    from fault_proxy import FaultProxy, Rule

    from mraster.engine.runner import EventSink, handle_commands

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go(proxy):
        async with after_a_cycle(proxy.url, s, tmp_path, consistency_s=0.05) as eng:
            held = [p.symbol for p in eng.state["positions"].values()]
            proxy.set_rules(Rule("POST", "/fapi/v1/order", symbol=held[0], refuse=1.0))
            await handle_commands(eng, {"inbox": [{"id": "c1", "kind": "flatten"}]}, eng.state,
                                  EventSink(None))
            return held, eng.state

    with FaultProxy(url) as proxy:
        held, state = asyncio.run(go(proxy))
    acct = sim.accounts[API_KEY]
    assert len(held) >= 2
    assert acct.positions[held[0]].amt != 0  # refused: still open, still protected
    assert {"stop", "tp"} <= {ids.bracket_kind(o.to_api()) for o in acct.open_orders(held[0])}
    for sym in held[1:]:
        assert acct.positions[sym].amt == 0, sym
        assert not acct.open_orders(sym), sym  # the closed trade's brackets cancelled
    assert {h["symbol"] for h in state["history"] if h["reason"] == "manual"} == set(held[1:])
    assert any(a["symbol"] == held[0] and a["level"] == "error" and "not confirmed" in a["message"]
               for a in state["alerts"])
    ack = state["command_acks"]["c1"]
    assert not ack["ok"] and ack["partly"]  # the page: "partly done", not "refused"
    assert ack["message"] == (
        f"closed {', '.join(held[1:])} at market; not closed: {held[0]} (see its notice)")
    assert not [a for a in state["alerts"] if a["message"].startswith("command flatten")]


def test_the_bot_saves_its_guards_market_close_before_it_leaves(sim_factory, tmp_path):
    """A stop the guard cannot place because price already passed it: the position is closed
    at market, and the bot's state (the close's attempt count, which names its id) is saved
    before that order leaves, so a restart never sends the id again; a save that fails (a full
    disk) does not hold the close back."""
    from mraster.domain import position_amounts

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)
    seen = []

    async def stop_passed(save):
        """A fresh engine's first position, its stop beyond the price (placing it would trigger
        at once), after one guard pass with ``save(token, pos)`` as the bot's save."""
        async with after_a_cycle(url, s, tmp_path) as eng:
            token, pos = next(iter(eng.state["positions"].items()))
            pos.stop = pos.entry * (1.05 if pos.side.value == "BUY" else 0.95)
            eng.save = lambda: save(token, pos)
            await eng.guard.run(eng.state["positions"],
                                position_amounts(await eng.ex.position_risk()))
            return pos

    def recorded(token, pos):  # what the state file would hold, and the exchange then
        seen.append((pos.close_seq, ids.order_id("X", token) in {
            o.clientOrderId for o in sim.accounts[API_KEY].orders.values()}))
    pos = asyncio.run(stop_passed(recorded))
    assert seen == [(1, False)]  # saved with the attempt counted, before the close left
    assert sim.accounts[API_KEY].positions[pos.symbol].amt == 0

    def disk_full(token, pos):  # a save that fails holds back no close of an unprotected position
        raise OSError(28, "No space left on device")
    sim.step(5 * 60_000)
    full = asyncio.run(stop_passed(disk_full))
    assert full.symbol != pos.symbol and sim.accounts[API_KEY].positions[full.symbol].amt == 0


def test_a_closed_trade_whose_brackets_cannot_be_cancelled_waits_and_leaves_the_new_position(
        sim_factory, tmp_path):
    """The bot's trade on a symbol closed by hand and the symbol opened again by hand in the
    same direction, while the exchange refuses to cancel the trade's leftover stop and
    take-profit (fault proxy, real HTTP): a notice says so (once), the trade waits for its
    booking, and meanwhile the symbol's position is not the bot's — *Flatten all* leaves it
    alone and no bracket of the bot is placed on it. Once the cancel goes through the trade is
    booked and its orders are gone."""
    from fault_proxy import FaultProxy, Rule

    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    def bot_orders(sym: str) -> set[str]:
        return {o.clientOrderId for o in sim.accounts[API_KEY].open_orders(sym)
                if ids.parse(o.clientOrderId)}

    async def go(proxy):
        async with after_a_cycle(proxy.url, s, tmp_path, consistency_s=0.05) as eng:
            pos = min(eng.state["positions"].values(), key=lambda p: p.symbol)
            sym, close = pos.symbol, "SELL" if pos.side.value == "BUY" else "BUY"
            async with AsterRest(url, API_KEY, API_SECRET) as c:  # by hand, past the proxy
                rules = rules_from_exchange_info(await c.exchange_info())
                await c.new_order(symbol=sym, side=close, type="MARKET", quantity=str(pos.qty),
                                  reduceOnly=True, newClientOrderId="web_close_1")
                await c.new_order(symbol=sym, side=pos.side.value, type="MARKET",
                                  quantity=str(rules[sym].round_qty(pos.qty / 3)),
                                  newClientOrderId="web_open_1")
            acct = sim.accounts[API_KEY]
            mine, hand = bot_orders(sym), acct.positions[sym].amt
            proxy.set_rules(Rule("DELETE", "/fapi/v1/order", symbol=sym, refuse=1.0))
            await eng.cycle()
            await eng.cycle()  # refused again: said once, not every cycle
            waiting = dict(eng.state["positions"])
            await eng.close_positions(None)
            during = bot_orders(sym), acct.positions[sym].amt
            proxy.heal()
            await eng.cycle()
            return pos, mine, hand, waiting, during, eng.state

    with FaultProxy(url) as proxy:
        pos, mine, hand, waiting, during, state = asyncio.run(go(proxy))
    sym, acct = pos.symbol, sim.accounts[API_KEY]
    assert waiting[pos.token].ended_at  # over, not booked while its orders stand
    assert [a["level"] for a in state["alerts"]
            if a["symbol"] == sym and "could not be cancelled" in a["message"]] == ["error"]
    assert during == (mine, hand)  # flatten left the position alone; no bot order added
    (t,) = [t for t in state["history"] if t["symbol"] == sym]
    assert t["reason"] == "manual" and t["qty"] == pytest.approx(pos.qty)
    assert not bot_orders(sym) and acct.positions[sym].amt == hand
    assert sym in {e["symbol"] for e in state["external_positions"]}


def test_a_bot_position_added_to_by_hand_stays_protected_and_is_said_once(sim_factory, tmp_path):
    """You add to a position of the bot by hand (simulator over real HTTP): it stays the
    bot's — still protected, its record unchanged — and a notice says once, not every cycle,
    that its stop and take-profit close all of it, your part too."""
    sim, url, _ = sim_factory(n=12, seed=11)
    s = settings_for(tmp_path, url)

    async def go():
        async with after_a_cycle(url, s, tmp_path) as eng:
            pos = min(eng.state["positions"].values(), key=lambda p: p.symbol)
            async with AsterRest(url, API_KEY, API_SECRET) as c:
                rules = rules_from_exchange_info(await c.exchange_info())
                await c.new_order(symbol=pos.symbol, side=pos.side.value, type="MARKET",
                                  quantity=str(rules[pos.symbol].round_qty(pos.qty / 2)),
                                  newClientOrderId="web_add_1")
            await eng.cycle()
            await eng.cycle()
            return pos, eng.state

    pos, state = asyncio.run(go())
    said = [a for a in state["alerts"] if a["symbol"] == pos.symbol and "added to" in a["message"]]
    assert len(said) == 1 and "close all of it" in said[0]["message"]
    assert state["positions"][pos.token].qty == pos.qty
    assert pos.symbol not in {e["symbol"] for e in state["external_positions"]}
    orders = sim.accounts[API_KEY].open_orders(pos.symbol)
    assert sorted(ids.bracket_kind(o.to_api()) for o in orders) == ["stop", "tp"]
    assert all(o.closePosition for o in orders)
