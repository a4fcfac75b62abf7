"""The bot and the bracket guard through exchange trouble, as real processes over HTTP: an
exchange that is down is waited for (never a refusal to start), every wait ends within a
second of SIGTERM, and the guard outlives error bursts."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from conftest import API_KEY, API_SECRET, ROOT, bare_positions
from dashboard_helpers import Dashboard, dashboard_environ, wait_for
from fault_proxy import FaultProxy, Rule
from mraster.dashboard.supervisor import lock_holder
from mraster.engine.cycle import Engine
from mraster.engine.runner import bot_state
from mraster.exchange import errors as E
from mraster.exchange.rest import AsterRest
from mraster.sim.server import Faults
from mraster.store import JsonDocument


def live_env(tmp_path, url: str, **extra) -> dict[str, str]:
    return dashboard_environ(tmp_path, ASTER_PAPER="false", ASTER_EXCHANGE_BASE=url,
                             ASTER_API_KEY=API_KEY, ASTER_API_SECRET=API_SECRET,
                             ASTER_SCAN_INTERVAL_SECONDS="1", ASTER_MIN_QUOTE_VOL_USDT="0",
                             **extra)


def process_env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    env.update(settings)
    return env


def test_a_live_bot_waits_for_an_exchange_that_is_down_then_trades(sim_factory, tmp_path):
    """Started while every request fails: the bot keeps running and the dashboard says it is
    waiting for the exchange (not "refused to start"); once the exchange answers it trades."""
    sim, url, _ = sim_factory(n=6, seed=11)
    with FaultProxy(url) as proxy:
        proxy.set_rules(Rule(refuse=1.0))
        with Dashboard(tmp_path, live_env(tmp_path, proxy.url)) as d:
            assert d.post("/api/bot/start").status_code == 200
            status = wait_for(lambda: (s := d.get("/api/bot/status").json())["waiting"] and s,
                              what="the bot waiting for the exchange")
            assert status["running"] is True and status["last_exit_code"] is None
            proxy.heal()
            wait_for(lambda: d.state_file().get("stats", {}).get("cycles", 0) >= 1, timeout=60,
                     what="a cycle after the exchange came back")
            assert wait_for(lambda: d.get("/api/bot/status").json()["waiting"] == "",
                            what="the waiting notice cleared")
            d.post("/api/bot/stop")
            final = wait_for(lambda: (s := d.get("/api/bot/status").json())["state"] == "stopped"
                             and s, timeout=20, what="the bot stopped")
            assert final["last_exit_code"] == 0  # stopped by SIGTERM in time, not killed


def test_sigterm_ends_a_rate_limit_wait_at_once(sim_factory, tmp_path):
    """A budget so small that the first scan must wait for the next minute: SIGTERM during
    that wait stops the bot within the supervisor's 10 s grace (it used to sleep it out)."""
    sim, url, app = sim_factory(n=12, seed=11, faults=Faults(weight_limit=300))
    env = process_env(live_env(tmp_path, url))
    proc = subprocess.Popen([sys.executable, str(ROOT / "aster_multi_bot.py")], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        # the governor keeps a scan within 80 % of the announced 300: it is waiting now
        wait_for(lambda: app.state.meter.max_seen >= 200, timeout=60, what="the budget used up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
        assert lock_holder(str(tmp_path / "aster_state.json")) is None
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_guard_once_fails_in_one_line_and_the_loop_outlives_an_error_burst(sim_factory,
                                                                              tmp_path):
    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    with FaultProxy(url, seed=4) as proxy:
        env = process_env({k: v for k, v in s.to_env().items() if k in (
            "ASTER_STATE_FILE", "ASTER_BRACKETS_QUEUE_FILE", "ASTER_API_KEY", "ASTER_API_SECRET",
            "ASTER_PAPER")} | {"ASTER_EXCHANGE_BASE": proxy.url})
        proxy.set_rules(Rule(refuse=1.0))
        once = subprocess.run([sys.executable, str(ROOT / "brackets_guard.py"), "--once"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert once.returncode == 1
        assert "Traceback" not in once.stderr
        assert once.stderr.strip().splitlines()[-1].startswith("brackets_guard: the exchange failed")
        proxy.set_rules(Rule(refuse=0.7))
        loop = subprocess.Popen([sys.executable, str(ROOT / "brackets_guard.py"), "--loop", "1"],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: proxy.count("refuse") >= 30 or loop.poll() is not None, timeout=60,
                     what="an error burst")
            assert loop.poll() is None, loop.stderr.read()  # still running through the burst
            proxy.heal()
            acct = sim.accounts[API_KEY]
            wait_for(lambda: all({(sym, "STOP_MARKET"), (sym, "TAKE_PROFIT_MARKET")} <=
                                 {(o.symbol, o.type) for o in acct.open_orders()} for sym in held),
                     timeout=90, what="brackets back once the exchange answers")
            loop.send_signal(signal.SIGTERM)
            assert loop.wait(timeout=10) == 0
        finally:
            if loop.poll() is None:
                loop.kill()


async def a_failing_cycle(proxy: FaultProxy, s, tmp_path) -> None:
    """One cycle of a bot started on the files in ``tmp_path``, through ``proxy``: it fails."""
    async with AsterRest(proxy.url, API_KEY, API_SECRET) as c:
        eng = Engine(c, s, bot_state(JsonDocument(tmp_path / "aster_state.json")),
                     JsonDocument(tmp_path / "brackets_queue.json", default=lambda: {"items": {}}),
                     lambda *a, **k: None)
        with pytest.raises(E.ExchangeUnavailable):
            await eng.cycle()


@pytest.mark.parametrize("down", ["/fapi/v1/ticker", "/fapi/v1/premiumIndex", "/fapi/v2/account"])
def test_a_cycle_whose_first_reads_fail_still_puts_missing_brackets_back(sim_factory, tmp_path,
                                                                         down):
    """The tickers, the premium index or the account cannot be read, so the cycle fails (and
    the runner says so on the page); but the positions and open orders were read, so a position
    whose brackets were cancelled by hand gets them back in that same cycle. A stop never waits
    for market data (the guard ran only after every first read had answered: while one endpoint
    kept failing, such a position stayed without a stop)."""
    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    acct = sim.accounts[API_KEY]

    with FaultProxy(url) as proxy:
        proxy.set_rules(Rule("GET", down, refuse=1.0))
        asyncio.run(a_failing_cycle(proxy, s, tmp_path))
        assert proxy.count("refuse") >= 1
    protected = {(o.symbol, o.type) for o in acct.open_orders()}
    for sym in held:
        assert {(sym, "STOP_MARKET"), (sym, "TAKE_PROFIT_MARKET")} <= protected, sym


def test_a_cycle_whose_adoption_fails_still_puts_the_other_positions_brackets_back(
        sim_factory, tmp_path):
    """One of the bot's positions is missing from the state file (so the cycle adopts it) and
    its open orders cannot be read, so the adoption and the cycle fail; the other positions,
    whose brackets were cancelled by hand, get them back in that cycle all the same."""
    sim, url, _ = sim_factory(n=6, seed=11)
    s, held = bare_positions(sim, url, tmp_path)
    doc = JsonDocument(tmp_path / "aster_state.json")
    saved = doc.read()
    lost = sorted(saved["positions"])[0]
    lost_symbol = saved["positions"].pop(lost)["symbol"]
    doc.write(saved)

    with FaultProxy(url) as proxy:  # the symbol's own open orders: the adoption's read
        proxy.set_rules(Rule("GET", "/fapi/v1/openOrders", symbol=True, refuse=1.0))
        asyncio.run(a_failing_cycle(proxy, s, tmp_path))
        assert proxy.count("refuse") >= 1
    protected = {(o.symbol, o.type) for o in sim.accounts[API_KEY].open_orders()}
    assert len(held) >= 2
    for sym in held - {lost_symbol}:
        assert {(sym, "STOP_MARKET"), (sym, "TAKE_PROFIT_MARKET")} <= protected, sym
