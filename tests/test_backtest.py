"""The backtest is the live engine over history: same trades as the live loop against the
simulator, no look-ahead, a readable report, and clear messages for bad data."""
from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import API_KEY, API_SECRET, DATA
from mraster import settings as st
from mraster.backtest.__main__ import main as backtest_main
from mraster.backtest.held import HeldSteps
from mraster.backtest.runner import WARMUP_CANDLES, backtest_settings, run_backtest
from mraster.engine.cycle import Engine
from mraster.exchange.rest import AsterRest
from mraster.sim.exchange import SimExchange
from mraster.sim.market import BASE_MS, QUOTE_USD, replay_market
from mraster.sim.serve import ThreadedServer
from mraster.sim.server import Faults, create_sim_app
from mraster.store import JsonDocument
from mraster.strategy.filters import LABELS

SYMBOLS = ["ETHBTC", "ADABTC"]
SEVEN = ["ADABTC", "ETCBTC", "ETHBTC", "LTCBTC", "NXTBTC", "TRXBTC", "XLMBTC"]  # same 20 days
STEPS = 700  # about two and a half days of 5m candles after the warm-up


def defaults() -> st.Settings:
    return st.load(environ={}, env_file=Path("/none"))


def trade_keys(trades):
    return [(t["symbol"], t["side"], t["opened_at"], t["closed_at"], t["qty"], t["entry"],
             t["exit"], t["reason"]) for t in trades]


def window():
    m = replay_market(DATA, SYMBOLS, manual=True, warmup=WARMUP_CANDLES)
    start = max(int(s.t[WARMUP_CANDLES]) for s in m.series.values()) // BASE_MS * BASE_MS
    return start, start + STEPS * BASE_MS


def live_loop_over_http(tmp_path: Path, start: int, end: int, overrides=None) -> dict:
    """The live bot's engine and REST client against the simulator replaying the same candles."""
    market = replay_market(DATA, SYMBOLS, manual=True, warmup=WARMUP_CANDLES)
    market.clock.set(start)
    s = backtest_settings({**defaults(), **(overrides or {})}, "BTC")
    sim = SimExchange(market, balance=s["ASTER_PAPER_BALANCE"] / QUOTE_USD["BTC"])
    app = create_sim_app(sim, {API_KEY: API_SECRET}, Faults(weight_limit=10**9))
    state: dict = {}

    async def go() -> None:
        async with AsterRest(srv.url, API_KEY, API_SECRET) as c:
            eng = Engine(c, s, state, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None)
            for _ in range((end - start) // BASE_MS):
                sim.step(BASE_MS)
                await eng.cycle()
    with ThreadedServer(app) as srv:
        asyncio.run(go())
    return state


@pytest.mark.parametrize("overrides", [
    {},
    # the alpha model speaks from the third trade on: vetoes, and their shadows settled live
    # from the candles the client fetched, in the backtest from the replay's (skipped steps too)
    {"ASTER_ALPHA_WARMUP": 3},
])
def test_backtest_and_live_loop_make_the_same_trades(tmp_path, overrides):
    start, end = window()
    bt = run_backtest(DATA, {**defaults(), **overrides}, symbols=SYMBOLS, start_ms=start,
                      end_ms=end)
    live = live_loop_over_http(tmp_path, start, end, overrides)
    assert len(bt.state["history"]) >= 5, "the slice should trade"
    assert trade_keys(bt.state["history"]) == trade_keys(live["history"])
    # every decision of every step alike: the backtest's bulk features equal the live ones
    assert bt.state["stats"]["skipped"] == live["stats"]["skipped"]
    assert bt.state["stats"]["taken"] == live["stats"]["taken"]
    assert bt.state["policy"] == live["policy"]
    if overrides:
        assert bt.state["stats"]["skipped"]["alpha_veto"] > 10
        assert bt.state["policy"]["alpha"]["count"] > len(bt.state["history"])  # shadows taught
        # the page is told where the model stands: past its warm-up, what it learned from
        learning = live["telemetry"]["learning"]
        assert learning["alpha"] and learning["warmup"] == 3
        assert learning["lessons"] == live["policy"]["alpha"]["count"]
        assert isinstance(learning["shadows"], int)


def test_a_future_spike_changes_nothing_before_it_happens(tmp_path):
    src = DATA / "ETH_BTC-5m.csv"
    planted = tmp_path / "data"
    planted.mkdir()
    lines = src.read_text().splitlines()
    k = WARMUP_CANDLES + 500
    t, o, h, l, c, v = lines[k + 1].split(",")
    lines[k + 1] = ",".join([t, o, str(float(h) * 3), l, str(float(c) * 2.5), v])  # a wild candle
    (planted / "ETH_BTC-5m.csv").write_text("\n".join(lines) + "\n")
    spike_t = int(t)
    plain = run_backtest(DATA, defaults(), symbols=["ETHBTC"], end_ms=spike_t + 50 * BASE_MS)
    spiked = run_backtest(planted, defaults(), symbols=["ETHBTC"], end_ms=spike_t + 50 * BASE_MS)

    def before(result):
        return [x for x in trade_keys(result.state["history"]) if x[3] <= spike_t]
    assert before(plain) and before(plain) == before(spiked)
    assert [e for e in plain.equity if e[0] <= spike_t] == [e for e in spiked.equity if e[0] <= spike_t]
    # the spike does change the decisions after it
    assert plain.state["stats"]["skipped"] != spiked.state["stats"]["skipped"]


def test_a_bad_setting_on_the_command_line_is_named_as_given_there(tmp_path, capsys, monkeypatch):
    """``ASTER_LEVERAGE=999`` written after the command was said to come "from environment",
    sending the user to look in their shell; one set in the environment still says so."""
    monkeypatch.setenv("ASTER_RISK_PER_TRADE", "0.5")
    args = ["--data", str(DATA), "--out", str(tmp_path / "out"), "ASTER_LEVERAGE=999"]
    assert backtest_main(args) == 2
    err = capsys.readouterr().err
    assert "ASTER_LEVERAGE: '999' is not allowed; expected an integer in [1, 125] (from the " \
           "command line)" in err
    assert "ASTER_RISK_PER_TRADE: '0.5' is not allowed" in err and "0.02] (from environment)" in err


def test_report_files_and_figures(tmp_path, capsys):
    start, end = window()
    code = backtest_main(["--data", str(DATA), "--symbols", ",".join(SYMBOLS), "--from", str(start),
                          "--to", str(end), "--out", str(tmp_path / "out"), "--preset", "low",
                          "ASTER_SL_ATR_MULT=1.2"])
    assert code == 0
    out = capsys.readouterr()
    assert "trades" in out.out and "backtest 100.0%" in out.err  # progress was shown
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    sm = rep["summary"]
    for key in ("trades", "win_rate", "profit_factor", "expectancy_r", "max_drawdown", "sharpe",
                "sortino", "exposure", "total_return", "fees", "funding"):
        assert key in sm
    assert rep["settings"]["ASTER_SL_ATR_MULT"] == 1.2 and rep["settings"]["ASTER_LEVERAGE"] == 4
    assert set(rep["per_symbol"]) == set(SYMBOLS)
    assert sum(v["count"] for v in rep["skipped_signals"].values()) > 0
    assert all(v["why"] for v in rep["skipped_signals"].values())
    # the report names each reason in words (its code stays the key)
    assert all(v["label"] == LABELS[k] for k, v in rep["skipped_signals"].items())
    rows = list(csv.DictReader((tmp_path / "out" / "trades.csv").open()))
    assert len(rows) == sm["trades"] and all(r["reason"] and r["r"] for r in rows)
    assert len((tmp_path / "out" / "equity.csv").read_text().splitlines()) == rep["candles_per_symbol"] + 1
    # report.json is indented for a reader, with a point of the equity curve per line (a
    # number per line made a long run's file slow to write): the points of equity.csv
    text = (tmp_path / "out" / "report.json").read_text()
    assert text.startswith('{\n "symbols": [\n  "')
    points = [json.loads(m[1]) for m in re.finditer(r"^\s*(?:\"equity_curve\": \[)?(\[.*?\])",
                                                      text, re.M) if "," in m[1]]
    assert points == rep["equity_curve"] and len(points) == rep["candles_per_symbol"]
    # ...and a trade per line (an indented trade took 16 lines)
    lines = [json.loads(m[1]) for m in re.finditer(r'^\s*(?:"trades": \[)?(\{"symbol".*\})[,\]]*$',
                                                     text, re.M)]
    assert lines == rep["trades"] and len(lines) == sm["trades"] > 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html
    # the account is kept in the pairs' quote currency, and the report says which
    assert rep["quote"] == "BTC" and "Amounts in BTC" in html and "PnL (BTC)" in html
    assert rep["gaps"]["ADABTC"]  # ADA/BTC has real gaps; they are reported


@pytest.mark.parametrize("problem,expect", [
    ("unsorted", "is not after the previous row"),
    ("garbage", "not a number"),
    ("unknown", "no 5m candle file for DOGEBTC"),
    ("empty_range", "holds no candles"),
])
def test_bad_input_gets_a_clear_message_naming_file_and_line(tmp_path, capsys, problem, expect):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "ETH_BTC-5m.csv", data / "ETH_BTC-5m.csv")
    args = ["--data", str(data), "--out", str(tmp_path / "out")]
    path = data / "ETH_BTC-5m.csv"
    lines = path.read_text().splitlines()
    if problem == "unsorted":
        lines[10], lines[11] = lines[11], lines[10]
    elif problem == "garbage":
        lines[20] = lines[20].replace(",", ",x", 1)
    elif problem == "unknown":
        args += ["--symbols", "DOGEBTC"]
    else:
        args += ["--from", "2018-01-29", "--to", "2018-01-28"]
    path.write_text("\n".join(lines) + "\n")
    assert backtest_main(args) == 2
    err = capsys.readouterr().err
    assert expect in err
    if problem in ("unsorted", "garbage"):
        assert "ETH_BTC-5m.csv:" in err  # file and line
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_symbols_with_the_same_open_times_share_one_read_only_column():
    """A replay holds each distinct open-time column once (a year of 50 symbols held its one
    grid 50 times: 42 MB), and so do the backtest's signal and trend groups built on it; the
    shared column is read-only, so no symbol can change another's times. Real candles: four of
    the seven spot pairs have the same 5,760 candles, the others have gaps of their own."""
    from mraster.backtest.data import ReplayData

    market = replay_market(DATA, manual=True, warmup=WARMUP_CANDLES)
    by_times: dict[bytes, list[str]] = {}
    for sym, x in market.series.items():
        by_times.setdefault(x.t.tobytes(), []).append(sym)
    same = max(by_times.values(), key=len)
    assert len(same) >= 4 and len(by_times) >= 3
    for syms in by_times.values():  # one array per distinct column, whatever the symbols
        assert len({id(market.series[x].t) for x in syms}) == 1
    assert len({id(x.t) for x in market.series.values()}) == len(by_times)
    with pytest.raises(ValueError):
        market.series[same[0]].t[0] += 1
    data = ReplayData(market, "15m", "1h")
    for part in (lambda x: x.ltf[0], lambda x: x.htf_t):
        assert len({id(part(data.symbols[x])) for x in same}) == 1
        assert len({id(part(x)) for x in data.symbols.values()}) == len(by_times)


def test_bulk_features_equal_the_live_features_on_every_window():
    """The backtest's features for all windows at once (backtest.data) against features() on
    each window, as the live engine computes them, over real ETHBTC and XRPUSDT candles."""
    from mraster.backtest.data import ReplayData
    from mraster.strategy.signals import features

    market = replay_market(DATA, ["ETHBTC", "XRPUSDT"], manual=True, warmup=WARMUP_CANDLES)
    data = ReplayData(market, "5m", "1h")
    checked = 0
    for sym, s in market.series.items():
        for t in s.t[::19]:
            now = int(t) + BASE_MS
            got = data.candles(sym, now)
            ltf, htf = got
            assert ltf.t[-1] < now and (len(htf) == 0 or htf.t[-1] + 3_600_000 <= now)  # closed only
            fast, ref = data.features(sym, ltf, htf), features(ltf, htf)
            if ref is None:
                assert fast is None
                continue
            for k, v in vars(ref).items():  # bit for bit: no window sees other numbers
                assert getattr(fast, k) == v or (np.isnan(v) and np.isnan(getattr(fast, k))), \
                    (sym, now, k)
            checked += 1
    assert checked > 200


def both_ways(s, symbols, steps: int = 2500):
    """The same ``steps`` steps after the warm-up, skipping idle steps and running every one."""
    m = replay_market(DATA, symbols, manual=True, warmup=WARMUP_CANDLES)
    start = max(int(x.t[WARMUP_CANDLES]) for x in m.series.values()) // BASE_MS * BASE_MS
    end = start + steps * BASE_MS
    return (run_backtest(DATA, s, symbols=symbols, start_ms=start, end_ms=end),
            run_backtest(DATA, s, symbols=symbols, start_ms=start, end_ms=end, skip_idle=False))


def assert_same_run(fast, full) -> None:
    """The run that skipped steps equals the one that ran every step: trades, funding, skip
    counts, equity curve, breakers, each bracket's protection log, notices, cooldowns, policy."""
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])
    assert [t["funding"] for t in fast.state["history"]] == \
        [t["funding"] for t in full.state["history"]]
    assert fast.state["stats"] == full.state["stats"]
    assert fast.equity == full.equity
    assert fast.state["equity_curve"] == full.state["equity_curve"]
    assert fast.state["protections"] == full.state["protections"]
    assert fast.state["protection_log"] == full.state["protection_log"]
    assert [a["message"] for a in fast.state["alerts"]] == \
        [a["message"] for a in full.state["alerts"]]
    assert fast.state["cooldowns"] == full.state["cooldowns"]
    assert fast.state["policy"] == full.state["policy"]


@pytest.mark.parametrize("symbols,overrides", [
    (SYMBOLS, {}),  # the defaults: the bandit explores, the alpha model speaks after 30 trades
    # no exploration bonus: untrained arms tie with SKIP, so chance decides (engine steps);
    # an early alpha model vetoes from the fifth trade on
    (SYMBOLS, {"ASTER_BANDIT_ALPHA": 0.0, "ASTER_ALPHA_WARMUP": 5}),
    # a perpetual with real funding and mark price, trading against the trend
    (["XRPUSDT"], {"ASTER_TREND_BIAS": "against", "ASTER_MIN_EDGE_R": 0.1, "ASTER_ALPHA_WARMUP": 5}),
    # both timeframes' trends must agree: the screen needs the EMAs before it knows the side
    (SYMBOLS, {"ASTER_ALLOW_TREND_ALIGN": True}),
    # seven pairs through a crash: candidates the sentinel's red label blocks before the policy
    (SEVEN, {}),
    # one stop-out locks its symbol for a day: some symbol is locked on nearly every step, and
    # the walk books its candidates as "symbol_locked" while the others still reach the policy
    (SYMBOLS, {"ASTER_SYMBOL_STOPS": 1, "ASTER_SYMBOL_LOCK_MINUTES": 1440.0,
               "ASTER_STREAK_STOPS": 0}),
])
def test_skipping_idle_steps_changes_nothing(symbols, overrides, monkeypatch):
    """The engine runs only where something can happen; the rest is screened in bulk, block by
    block ahead of the steps (small blocks here: the slice spans nine). Both ways over the same
    history give the same trades, skip counts, equity curve and learned policy."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    fast, full = both_ways({**defaults(), **overrides}, symbols)
    assert len(full.state["history"]) >= 4, "the slice should trade"
    # trades, funding, skip counts, equity curve, policy, breakers (ledger, log), each bracket
    # placed, moved, verified and triggered at the same moments, the notices
    assert_same_run(fast, full)
    skipped = full.state["stats"]["skipped"]
    assert skipped.get("policy_skip", 0) + skipped.get("alpha_veto", 0) > 10  # the policy spoke
    if symbols == SEVEN:
        assert skipped["sentinel_block"] > 100
    if "ASTER_SYMBOL_STOPS" in overrides:
        assert skipped["symbol_locked"] > 1000
    # the engine ran on a minority of the steps (how few depends on how long trades stay open)
    assert full.engine_steps == full.steps and fast.engine_steps < full.steps / 2


@pytest.mark.parametrize("overrides", [{}, {"ASTER_AI_MODE": True}])
def test_a_breaker_lifting_while_flat_needs_no_engine_step(overrides, monkeypatch):
    """A losing streak's pause or a symbol lock that ends while no position is open is lifted
    by the walk, as the engine's step at that moment would lift it, and the walk goes on under
    the breakers left: the engine runs for positions and decisions, not for the steps around
    a lift (it ran the last two candles before each one and the lift itself: 45 of the 231
    engine steps of the seven pairs' 20 days). The run equals running every step, breakers
    and their ledger included."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    # per run (the skipping one first): breakers lifted between two engine steps, and engine
    # steps that started and ended flat, sent nothing and only saw a breaker about to lift
    lifted: dict[Engine, list] = {}
    near_lift: dict[Engine, list] = {}
    cycle, last = Engine.cycle, {}

    async def watched(self, **kw):
        now = self.ex.sim.market.clock.now_ms()
        before = {(t.name, t.symbol) for t in self.breakers}
        lifted.setdefault(self, []).extend(last.get(self, set()) - before)
        flat, sent = not self.state["positions"], self.orders_sent
        soon = [t for t in self.breakers if t.until is not None and t.until <= now + 2 * BASE_MS]
        res = await cycle(self, **kw)
        if flat and soon and not self.state["positions"] and self.orders_sent == sent:
            near_lift.setdefault(self, []).append((now, [(t.name, t.symbol) for t in soon]))
        last[self] = {(t.name, t.symbol) for t in self.breakers}
        return res

    monkeypatch.setattr(Engine, "cycle", watched)
    fast, full = both_ways({**defaults(), **overrides}, SEVEN, steps=3000)
    skipping, every = list(lifted)
    assert len(lifted[skipping]) >= 5, lifted[skipping]  # lifted where no engine step ran
    assert near_lift.get(skipping, []) == []
    assert len(near_lift[every]) >= 15  # (running every step, these are engine steps)
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])
    assert fast.state["protections"] == full.state["protections"]
    assert fast.state["stats"] == full.state["stats"]
    assert fast.equity == full.equity
    assert fast.state["policy"] == full.state["policy"]


@pytest.mark.parametrize("overrides", [{}, {"ASTER_AI_MODE": True}])
def test_held_steps_that_change_nothing_need_no_engine_step(overrides, monkeypatch):
    """With a position open the engine ran every step, though most held steps change nothing:
    no bracket filled, no level moved, no symbol reached the entry gate or every one stopped
    there. Those steps are passed over (``backtest.held``); the engine runs where a bracket
    fills, FastTP or a locked stop moves a level, a candidate may be taken, or its step before
    left something to finish (brackets not yet as asked, a repair queued) — not merely because
    that step entered, closed or moved something. The run equals running every step: trades,
    funding, skip counts, equity curve, breakers, each bracket's protection log, notices and
    policy."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    holding: dict[Engine, list[int]] = {}  # per run: engine steps that began holding a position
    idle_held: dict[Engine, int] = {}  # ...and those among them that changed nothing at all
    cycle = Engine.cycle

    def marks(e: Engine) -> tuple:
        return ([(p.token, p.status, p.qty, p.stop, p.take_profit, p.stop_rule, p.fasttp_at,
                  dict(p.bracket_seq)) for p in e.state["positions"].values()],
                len(e.state["history"]), e.orders_sent, len(e.state["alerts"]),
                dict(e.state["cooldowns"]), [(t.name, t.symbol, t.until) for t in e.breakers],
                [(len(a.trades), len(a.income), a.next_id, a.balance)
                 for a in e.ex.sim.accounts.values()])

    async def watched(self, **kw):
        if not self.state["positions"]:
            return await cycle(self, **kw)
        holding.setdefault(self, []).append(self.ex.sim.market.clock.now_ms())
        before = marks(self)
        res = await cycle(self, **kw)
        idle_held[self] = idle_held.get(self, 0) + (marks(self) == before)
        return res

    # held steps passed over, and those among them whose candidates went to the policy (the
    # others stopped at their label or the gate: the held symbol's own signal, most often)
    passed, asked = [], []
    walk, next_busy = HeldSteps.walk, idle.IdleSteps.next_busy

    async def walking(self, step, now):
        got = await walk(self, step, now)
        if got is not None:
            passed.append(step)
        return got

    def walked_alone(self, i, policy, *args, until=None, **kw):
        if until is not None:
            asked.append(i)
        return next_busy(self, i, policy, *args, until=until, **kw)

    monkeypatch.setattr(Engine, "cycle", watched)
    monkeypatch.setattr(HeldSteps, "walk", walking)
    monkeypatch.setattr(idle.IdleSteps, "next_busy", walked_alone)
    fast, full = both_ways({**defaults(), **overrides}, SEVEN, steps=3000)
    skipping, every = (holding[e] for e in holding)
    assert len(every) >= full.exposure_steps - 1 > 100  # every held step was the engine's
    assert fast.exposure_steps == full.exposure_steps
    assert len(skipping) < 0.8 * len(every), (len(skipping), len(every))  # (was: all of them)
    # the engine's held steps do something: it took the step after each entry, close or moved
    # level too, and then a quarter of its held steps changed nothing (28 of 114 here, 129 of
    # 429 in AI mode; now 5 of 91 and 24 of 323)
    quiet = idle_held[next(iter(holding))]
    assert quiet < 0.1 * len(skipping), (quiet, len(skipping))
    assert len(passed) == len(every) - len(skipping)
    # most passed steps: every candidate stopped before the policy; the others were walked
    # through the policy's verdicts (a SKIP, a veto and its shadow)
    policy = len(set(asked) & set(passed))
    assert 5 < policy < 0.8 * len(passed), (policy, len(passed))
    log = full.state["protection_log"]
    assert any("moved" in e["what"] for e in log)  # levels moved while held: engine steps
    assert_same_run(fast, full)
    if "ASTER_AI_MODE" in overrides:
        assert fast.state["copilots"] == full.state["copilots"]


def test_a_busy_account_passes_held_steps_and_changes_nothing(monkeypatch):
    """The hardest case for passing held steps: an account trading on nearly every candle (no
    bandit, no alpha veto, any edge, loose RSI bands, no breakers, open risk up to half the
    equity, early break-even and trailing stops), so entries, closes and moved levels follow
    each other while other positions are held. A held step right after one of them is passed
    over when the engine left every bracket as asked; the run still equals running every
    step."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    busy = {"ASTER_BANDIT_ENABLED": False, "ASTER_ALPHA_ENABLED": False, "ASTER_MIN_EDGE_R": -5.0,
            "ASTER_RSI_BUY_MIN": 51.0, "ASTER_RSI_SELL_MAX": 49.0, "ASTER_MAX_DRAWDOWN": 0.0,
            "ASTER_DAILY_LOSS_LIMIT": 0.0, "ASTER_STREAK_STOPS": 0, "ASTER_SYMBOL_STOPS": 0,
            "ASTER_MAX_OPEN_RISK": 0.5,
            "ASTER_BREAKEVEN_R": 0.2, "ASTER_TRAIL_ACTIVATION_R": 0.3, "ASTER_TP_ATR_MULT": 4.0}
    # held steps passed over right after an engine step that entered, closed or moved a level
    # (none while the engine's step before had to change nothing; 25 of this slice's 600)
    passed_after_change, last = [], {}
    walk, cycle = HeldSteps.walk, Engine.cycle

    def levels(e: Engine) -> tuple:
        return (len(e.state["history"]), e.orders_sent,
                [(p.token, p.stop, p.take_profit) for p in e.state["positions"].values()])

    async def watched(self, **kw):
        before = levels(self)
        res = await cycle(self, **kw)
        last[self] = levels(self) != before
        return res

    async def walking(self, step, now):
        got = await walk(self, step, now)
        if got is not None and last.pop(self.engine, False):
            passed_after_change.append(step)
        return got

    monkeypatch.setattr(Engine, "cycle", watched)
    monkeypatch.setattr(HeldSteps, "walk", walking)
    fast, full = both_ways({**defaults(), **busy}, SEVEN, steps=600)
    assert len(full.state["history"]) > 100, "the slice should trade on most candles"
    assert len(passed_after_change) > 10, passed_after_change
    assert fast.engine_steps < full.engine_steps
    assert_same_run(fast, full)


def test_engine_steps_settle_shadows_from_the_history_without_reading_their_candles(monkeypatch):
    """The shadows of vetoed signals an engine step settles are settled from the walk's reading
    of the whole history (the step each one settles at and the R it teaches, as the step's own
    candles would settle it), so their symbols' candles are not read for them; only the run's
    last step reads them itself. The run equals running every step, shadows and the policy
    they taught included."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    with_shadows, by_candles = {}, {}  # per run: engine steps with shadows open / read by candles
    cycle, follow = Engine.cycle, Engine._follow_shadows

    async def counted(self, **kw):
        if self.shadows:
            with_shadows[self] = with_shadows.get(self, 0) + 1
        return await cycle(self, **kw)

    def by_their_candles(self, candles, now):
        if self.shadows:
            by_candles[self] = by_candles.get(self, 0) + 1
        return follow(self, candles, now)

    monkeypatch.setattr(Engine, "cycle", counted)
    monkeypatch.setattr(Engine, "_follow_shadows", by_their_candles)
    fast, full = both_ways({**defaults(), "ASTER_BANDIT_ALPHA": 0.0, "ASTER_ALPHA_WARMUP": 5},
                           SYMBOLS)
    skipping, every = list(with_shadows)
    assert with_shadows[skipping] >= 20 and by_candles.get(skipping, 0) <= 1
    assert by_candles[every] == with_shadows[every]
    assert fast.state["shadows"] == full.state["shadows"]
    assert fast.state["policy"] == full.state["policy"]
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])


def test_an_engine_steps_handed_candidates_are_scored_by_the_policy_in_one_batch(monkeypatch):
    """On an engine step the candidates the bulk screen handed over are scored by the policy in
    one batch when the entry gate first asks about one of them (one by one they took 60 µs
    each, seventeen at once 80 µs in all), and not at all when every one stops at the gate (a
    breaker, the caps: most of the 56-symbol run's steps). The decisions equal each one alone
    (test_policy), and the run equals running every step in full (the skip tests)."""
    from mraster.policy import BanditPolicy

    handed: dict[int, dict] = {}  # the policy features handed to engine steps (kept alive)
    steps: list[dict] = []  # per engine step: how many handed, decided, scored alone, in batches
    known_candidates = Engine._known_candidates
    decide, verdicts, prepare = BanditPolicy.decide, BanditPolicy.verdicts, BanditPolicy.prepare
    deciding: list[bool] = []

    def known(self, now):
        got = known_candidates(self, now)
        handed.update((id(g.policy_features), g.policy_features) for g in got.values())
        return got

    def batch(self, contexts):
        steps.append({"handed": len(contexts), "decided": 0, "alone": 0, "batched": 0})
        return prepare(self, contexts)

    def deciding_on(self, feats, *a, **kw):
        deciding.append(id(feats) in handed)
        if deciding[-1]:
            steps[-1]["decided"] += 1
        try:
            return decide(self, feats, *a, **kw)
        finally:
            deciding.pop()

    def scoring(self, x):
        if deciding and deciding[-1]:
            steps[-1]["alone" if len(x) == 1 else "batched"] += len(x)
        return verdicts(self, x)

    monkeypatch.setattr(Engine, "_known_candidates", known)
    monkeypatch.setattr(BanditPolicy, "prepare", batch)
    monkeypatch.setattr(BanditPolicy, "decide", deciding_on)
    monkeypatch.setattr(BanditPolicy, "verdicts", scoring)
    m = replay_market(DATA, SEVEN, manual=True, warmup=WARMUP_CANDLES)
    start = max(int(x.t[WARMUP_CANDLES]) for x in m.series.values()) // BASE_MS * BASE_MS
    res = run_backtest(DATA, defaults(), symbols=SEVEN, start_ms=start,
                       end_ms=start + 3000 * BASE_MS, market=m)
    assert len(res.state["history"]) >= 10
    many = [x for x in steps if x["handed"] > 1 and x["decided"]]
    assert len(many) >= 5 and max(x["decided"] for x in many) >= 3
    for x in many:  # one batch of all handed; none scored alone
        assert x["batched"] == x["handed"] and x["alone"] == 0, x
    gated = [x for x in steps if x["handed"] and not x["decided"]]
    assert gated and all(x["batched"] == x["alone"] == 0 for x in gated)


@pytest.mark.parametrize("overrides", [{}, {"ASTER_AI_MODE": True}])
def test_engine_steps_book_the_skips_the_bulk_screen_already_knows(overrides, monkeypatch):
    """On the steps the engine runs, a symbol the bulk screen skips for a reason of its own (no
    signal, a market filter, the edge) is booked with that reason: no candles, features or
    screen are worked out for it again; a candidate it passed goes on to the entry gate and the
    policy with the features, the answer and the policy features the bulk screen worked out
    for it (the same numbers): its candles are read only for a position or shadow there. The
    run's outcome is that of running every step in full (in AI mode too, under the playbook's
    tightening), and its last step decides every symbol itself, so the final decisions keep
    their figures. Except at the steps where AI mode renews its playbook (which reads every
    label), those symbols' sentinel labels are not worked out either, nor a handed candidate's
    unless it is red (the evaluator reads nothing else of it) or opens a position. The steps'
    quotes come from the walk's blocks: no ticker, book or premium rows are made and parsed."""
    from mraster.ai import playbook as PB
    from mraster.ai.copilots import Copilots
    from mraster.backtest.data import ReplayData
    from mraster.engine import cycle, evaluator

    asked: dict[ReplayData, int] = {}  # per run (its own replay data, kept alive here)
    labelled: dict[ReplayData, int] = {}
    read: dict[SimExchange, int] = {}  # bulk ticker reads per run (its own simulator)
    screened: list[int] = []  # symbols the engine's steps screened, per run (as they start)
    features, sentinel_label = ReplayData.features, ReplayData.sentinel_label
    ticker_24h = SimExchange.ticker_24h
    screen_each, init = cycle.screen_each, ReplayData.__init__
    known_candidates, fetch_candles = Engine._known_candidates, Engine._fetch_candles
    handed: dict[tuple[int, int], set[str]] = {}  # (run, step) → the candidates handed to it
    green: dict[tuple[int, int], set[str]] = {}  # ...of them, those whose label is not red
    asked_label: list[tuple[int, int, str]] = []  # (run, step, symbol) of every label worked out
    fetched: list[tuple[int, int, list[str], set[str]]] = []  # the steps' own candle reads
    renewed: set[tuple[int, int]] = set()  # (run, step) where AI mode's playbook was renewed
    refresh_playbook = Copilots.refresh_playbook

    def renewing(self, now, *args):  # the real playbook; its renewals noted
        if PB.due(self.book["playbook"], now, self.settings):
            renewed.add((len(screened), now))
        return refresh_playbook(self, now, *args)

    def noted(self, now):  # the real candidates, noted
        got = known_candidates(self, now)
        handed[len(screened), now] = set(got)
        green[len(screened), now] = {sym for sym, p in got.items() if not p.red}
        return got

    reviewing: list[bool] = []  # inside a closed trade's booking, whose review reads its own
    record_close = Engine._record_close

    async def booking(self, *args, **kwargs):  # the real booking; its candle reads told apart
        reviewing.append(True)
        try:
            return await record_close(self, *args, **kwargs)
        finally:
            reviewing.pop()

    async def fetching(self, symbols, now):  # the real candles; the cycle's reads noted
        if not reviewing:
            fetched.append((len(screened), now, list(symbols), {
                p.symbol for p in self.state["positions"].values()} | {
                sh["symbol"] for sh in self.shadows}))
        return await fetch_candles(self, symbols, now)

    def counted(self, sym, *args, **kwargs):  # the real features, counted
        asked[self] = asked.get(self, 0) + 1
        return features(self, sym, *args, **kwargs)

    def counted_label(self, sym, now, *args, **kwargs):  # the real labels, counted
        labelled[self] = labelled.get(self, 0) + 1
        asked_label.append((len(screened), now, sym))
        return sentinel_label(self, sym, now, *args, **kwargs)

    def counted_ticker(self, symbol=None):  # the real rows, counted
        read[self] = read.get(self, 0) + (symbol is None)
        return ticker_24h(self, symbol)

    def counted_screen(pairs, s):  # the real screen, counted for the run under way
        screened[-1] += len(pairs)
        return screen_each(pairs, s)

    built: list[int] = []  # the policy features the engine's steps built, per run
    build_features = evaluator.build_features

    def counted_build(ctx):  # the real policy features, counted for the run under way
        built[-1] += 1
        return build_features(ctx)

    def started(self, *args, **kwargs):  # a run makes its replay data first
        screened.append(0)
        built.append(0)
        init(self, *args, **kwargs)

    monkeypatch.setattr(ReplayData, "features", counted)
    monkeypatch.setattr(cycle, "screen_each", counted_screen)
    monkeypatch.setattr(evaluator, "build_features", counted_build)
    monkeypatch.setattr(ReplayData, "__init__", started)
    monkeypatch.setattr(Engine, "_known_candidates", noted)
    monkeypatch.setattr(Engine, "_fetch_candles", fetching)
    monkeypatch.setattr(Engine, "_record_close", booking)
    monkeypatch.setattr(ReplayData, "sentinel_label", counted_label)
    monkeypatch.setattr(SimExchange, "ticker_24h", counted_ticker)
    monkeypatch.setattr(Copilots, "refresh_playbook", renewing)
    s = {**defaults(), **overrides}
    assert s["ASTER_AI_SENTINEL_ENABLED"]  # the labels decide sizes and red blocks here
    fast, full = both_ways(s, SYMBOLS)  # in this order
    fast_asked, full_asked = asked.values()
    fast_labels, full_labels = labelled.values()
    fast_read, full_read = read.values()
    # the engine's steps take their quotes from the walk's blocks, but for its first step
    # (before the walk) and its last (which reads and screens everything itself)
    assert full_read == full.engine_steps == full.steps and fast_read == 2 < fast.engine_steps
    assert full_labels >= full.steps * len(SYMBOLS)
    assert fast_labels < 0.6 * fast.engine_steps * len(SYMBOLS)
    # a renewed playbook reads every symbol's label
    fast_run = len(screened) - 1  # (the fast run came first: noted as run 1 of 2)
    for run, now in renewed:
        assert {sym for r, t, sym in asked_label if (r, t) == (run, now)} == set(SYMBOLS)
    if "ASTER_AI_MODE" in overrides:
        assert sum(run == fast_run for run, _ in renewed) >= 5  # (others renewed on walked steps)
    # a handed candidate whose label is not red has its label worked out only for an entry's
    # size (the evaluator reads a label only for red), or for a renewed playbook
    opened = len(fast.state["history"]) + len(fast.state["positions"])
    assert sum(map(len, green.values())) > opened
    assert sum(sym in green.get((run, now), ()) for run, now, sym in asked_label
               if (run, now) not in renewed) <= opened
    assert full_asked > 0.9 * full.steps * len(SYMBOLS)  # every step, every symbol
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])
    assert fast.state["stats"] == full.state["stats"] and fast.equity == full.equity
    assert fast.state["policy"] == full.state["policy"]
    assert fast.state["decisions"] == full.state["decisions"]
    assert any("rsi" in d for d in fast.state["decisions"].values())
    # the candidates it passed come with their features and screen: only the first step
    # (before the walk starts) and the last (which decides everything itself) work out
    # features and screen symbols; nor are a candidate's candles read, but for a position
    # (one it opens included) or a shadow the step follows there
    fast_screened, full_screened = screened
    assert sum(map(len, handed.values())) > 10
    assert [(now, sym) for run, now, syms, held in fetched for sym in syms
            if sym in handed.get((run, now), ()) and sym not in held] == []
    assert fast_asked <= 2 * len(SYMBOLS) < fast.engine_steps
    assert fast_screened <= 2 * len(SYMBOLS) < fast.engine_steps
    # nor the policy's features of a candidate (the walk's verdicts read the same numbers)
    fast_built, full_built = built
    assert fast_built <= 2 * len(SYMBOLS) < full_built
    assert full_screened > 0.9 * full.steps * len(SYMBOLS)


@pytest.mark.parametrize("interval,trend", [("6h", "1d"), ("1d", "1d"), ("15m", "4h")])
def test_a_long_signal_timeframe_backtests_whatever_the_history_holds(interval, trend):
    """A signal timeframe whose 200-candle window the history never fills (6 h or a day over
    these 20 days) once crashed the backtest; its windows only grow, so the engine decides
    every step, with skipping or without."""
    s = {**defaults(), "ASTER_INTERVAL": interval, "ASTER_HTF_INTERVAL": trend}
    fast, full = both_ways(s, SYMBOLS, steps=600)
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])
    assert fast.state["stats"] == full.state["stats"] and fast.equity == full.equity
    assert sum(full.state["stats"]["skipped"].values()) > 0  # every step was decided


def test_the_command_line_says_when_the_timeframes_need_more_history(tmp_path, capsys):
    """Daily candles over a few days of data can never give a signal: the run says why and
    what to change, instead of a bare "0 trades"."""
    start, end = window()
    args = ["--data", str(DATA), "--symbols", "ETHBTC", "--from", str(start), "--to", str(end),
            "--out", str(tmp_path / "out")]
    assert backtest_main(args + ["ASTER_INTERVAL=1d", "ASTER_HTF_INTERVAL=1d"]) == 0
    out = capsys.readouterr().out
    assert "0 trades" in out and "need 60 candles of 1d and 60 of 1d" in out
    assert backtest_main(args) == 0
    assert "too few closed candles" not in capsys.readouterr().out  # the defaults have enough


# every setting that reaches the screen, the policy, the sizing, the exits or the breakers
DECIDING = """ASTER_RSI_BUY_MIN ASTER_RSI_SELL_MAX ASTER_ALLOW_TREND_ALIGN ASTER_TREND_BIAS
ASTER_MIN_EDGE_R ASTER_SPREAD_BPS_MAX ASTER_WICKINESS_MAX ASTER_FUNDING_FILTER_ENABLED
ASTER_FUNDING_MAX_LONG ASTER_FUNDING_MAX_SHORT ASTER_NON_ARB_FILTER_ENABLED
ASTER_NON_ARB_CLAMP_BPS ASTER_NON_ARB_EDGE_THRESHOLD ASTER_NON_ARB_SKIP_GAP ASTER_RISK_PER_TRADE
ASTER_EQUITY_FRACTION ASTER_LEVERAGE ASTER_SIZE_MULT_FLOOR ASTER_SIZE_MULT_CAP
ASTER_CONFIDENCE_SIZING ASTER_MAX_OPEN_GLOBAL ASTER_MAX_OPEN_PER_SYMBOL ASTER_SL_ATR_MULT
ASTER_TP_ATR_MULT ASTER_DAILY_LOSS_LIMIT ASTER_MAX_DRAWDOWN ASTER_STREAK_STOPS
ASTER_STREAK_WINDOW_MINUTES ASTER_STREAK_PAUSE_MINUTES ASTER_SYMBOL_STOPS
ASTER_SYMBOL_LOCK_MINUTES ASTER_MAX_OPEN_RISK ASTER_BREAKEVEN_R ASTER_TRAIL_ACTIVATION_R
ASTER_TRAIL_ATR ASTER_BANDIT_ENABLED ASTER_BANDIT_ALPHA ASTER_ALPHA_ENABLED
ASTER_ALPHA_THRESHOLD ASTER_ALPHA_WARMUP ASTER_SEED ASTER_AI_SENTINEL_ENABLED
ASTER_AI_SENTINEL_DECAY_MINUTES ASTER_MIN_QUOTE_VOL_USDT ASTER_AI_MODE ASTER_PRESET_MODE""".split()


def random_settings(rng: np.random.Generator) -> dict[str, str]:
    """A few of the deciding settings at values drawn from their catalogue ranges (near the
    default's order of magnitude, where the range is open or huge), until they validate."""
    while True:
        env = {}
        for name in rng.choice(DECIDING, int(rng.integers(3, 11)), replace=False).tolist():
            c = st.BY_NAME[name]
            if c.kind == "bool":
                env[name] = str(bool(rng.integers(2))).lower()
            elif c.kind == "choice":
                env[name] = str(rng.choice(c.choices))
            else:
                lo = c.min if c.min is not None else 0.0
                hi = c.max if c.max is not None else 3 * abs(c.default or 1)
                hi = min(hi, max(4 * abs(c.default), lo + 1)) if c.default else hi
                env[name] = str(int(rng.integers(int(lo), int(hi) + 1)) if c.kind == "int"
                                else float(rng.uniform(lo, hi)))
        try:
            return {**st.load(environ=env, env_file=Path("/none")), "_drawn": env}
        except st.SettingsErrors:
            continue


def test_progress_moves_while_the_walk_passes_a_long_flat_stretch():
    """With nothing to take, the engine runs on the first step only and the idle walk passes the
    rest of the history in one stretch. Its progress was reported only at the start and at the
    end: a year of 50 symbols sat at 1 % for the whole run, as if it had hung."""
    seen: list[float] = []
    result = run_backtest(DATA, {**defaults(), "ASTER_MIN_EDGE_R": 10.0}, symbols=SYMBOLS,
                          progress=lambda done, trades, open_: seen.append(done))
    assert result.state["history"] == [] and result.engine_steps < 5  # the walk did the rest
    assert seen == sorted(seen) and seen[-1] == 1.0
    # the walk looks ahead at most 1,024 steps at a time: 19 % of these 5,360 steps
    assert max(b - a for a, b in zip([0.0] + seen, seen)) < 0.2, seen


@pytest.mark.parametrize("seed", range(16))
def test_skipping_idle_steps_changes_nothing_for_random_settings(seed, monkeypatch):
    """Skipping idle steps must hold for whatever the user sets, not only for the cases above
    (a setting nobody had tried, ASTER_ALLOW_TREND_ALIGN, once made it take other trades):
    settings drawn from the catalogue's ranges, on pairs with and without funding, give the
    same trades, skip counts and equity curve both ways. (250 such draws were compared while
    writing this; sixteen stay here as a guard: the trend-alignment mistake fails two.)"""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 300)
    rng = np.random.default_rng(seed)
    s = random_settings(rng)
    drawn = s.pop("_drawn")
    symbols = [SYMBOLS, SEVEN, ["XRPUSDT"]][seed % 3]
    fast, full = both_ways(s, symbols, steps=1200)
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"]), drawn
    assert fast.state["stats"] == full.state["stats"], drawn
    assert fast.equity == full.equity, drawn
    assert fast.state["policy"] == full.state["policy"], drawn  # shadows taught it alike


def test_ai_mode_skips_idle_steps_and_changes_nothing(monkeypatch):
    """AI mode (rule-based copilots, as every backtest runs them) skips idle steps too: the walk
    renews the playbook on the engine's steps from the same inputs, screens with the filters it
    tightened, gives the policy each symbol's postmortem inputs and books red sentinel labels
    as the engine does. Both ways over 2,500 real steps of seven pairs (a January 2018 crash:
    red and yellow labels, shock playbooks, losing streaks) give the same trades, skip counts,
    equity, policy and copilots' memory."""
    from mraster.backtest import idle

    monkeypatch.setattr(idle, "BLOCK", 500)
    tightenings = set()
    screened = idle.IdleSteps._screened

    def spy(self, tighten):
        tightenings.add(tuple(sorted(tighten)))
        return screened(self, tighten)
    monkeypatch.setattr(idle.IdleSteps, "_screened", spy)
    pm_rows, build = [], idle.build_features

    def counted(ctx):  # the real features; the inputs of a symbol's postmortem row kept
        if set(ctx) == {"pm_edge", "pm_mae", "pm_exit_eff", "pm_slippage"}:
            pm_rows.append(repr(ctx))
        return build(ctx)
    monkeypatch.setattr(idle, "build_features", counted)
    fast, full = both_ways({**defaults(), "ASTER_AI_MODE": True}, SEVEN)
    assert len(full.state["history"]) >= 20, "the slice should trade"
    assert trade_keys(fast.state["history"]) == trade_keys(full.state["history"])
    assert fast.state["stats"] == full.state["stats"]
    skipped = full.state["stats"]["skipped"]
    assert skipped["sentinel_block"] > 50 and skipped["playbook_block"] > 0
    assert skipped.get("policy_skip", 0) + skipped.get("alpha_veto", 0) > 100
    assert fast.equity == full.equity and fast.state["policy"] == full.state["policy"]
    book = full.state["copilots"]
    assert fast.state["copilots"] == book  # the tuner's log too: dated by the replay's closes
    assert book["tuner_log"] and all(full.start_ms <= e["time"] <= full.end_ms
                                     for e in book["tuner_log"])
    assert book["postmortem"]  # reviewed trades fed the policy's features
    assert book["playbook"]["at"] > full.end_ms - 20 * 60_000  # renewed to the end
    # the walk screened with the playbook's tightened filters, not only the user's
    assert {(), ("ASTER_SPREAD_BPS_MAX", "ASTER_WICKINESS_MAX")} <= tightenings, tightenings
    # the engine runs while positions are held: half the slice, now that the alpha model keeps
    # learning from the signals it vetoed and lets some through again
    assert fast.engine_steps < full.steps / 2
    # a symbol's postmortem row is worked out again only once a review changed its inputs: at
    # most once per closed trade after the first rows (it was every symbol's row at every
    # stretch the walk took, then every symbol's row after each review: 1,421 rows for 227
    # trades in this slice)
    trades = len(fast.state["history"])
    assert len(SEVEN) + 10 < len(pm_rows) <= len(SEVEN) + trades, (len(pm_rows), trades)


@pytest.mark.parametrize("symbols", [SEVEN, ["XRPUSDT"]])
def test_bulk_sentinel_labels_and_day_tickers_equal_the_engines(symbols):
    """The idle walk labels whole blocks at once: every step's 24 h ticker numbers (as a client
    parses the rows) and sentinel label (its fold over the decay window) equal what the engine
    reads step by step, on real pairs through a crash (labels of every colour) and around
    the data's edges."""
    from mraster.ai.sentinel import RANK
    from mraster.backtest.data import ReplayData
    from mraster.sim.exchange import ticker_row

    market = replay_market(DATA, symbols, manual=True, warmup=WARMUP_CANDLES)
    data = ReplayData(market, "5m", "1h")
    seen = set()
    for sym, s in market.series.items():
        times = np.arange(int(s.t[0]) - 3 * BASE_MS, int(s.t[-1]) + 2 * BASE_MS, BASE_MS)
        d = data.day_changes(sym, times)
        for n, t in enumerate(times.tolist()):
            row = ticker_row(market, sym, t)
            assert (d["last"][n], d["high"][n], d["low"][n], d["change"][n],
                    d["quote_volume"][n]) == tuple(float(row[k]) for k in (
                        "lastPrice", "highPrice", "lowPrice", "priceChangePercent",
                        "quoteVolume")), (sym, t)
        for decay in (60.0, 7.0):
            bulk = data.sentinel_ranks(sym, times, decay)
            one = [RANK[data.sentinel_label(sym, t, decay)["label"]] for t in times.tolist()]
            assert bulk.tolist() == one, (sym, decay)
            red = data.sentinel_ranks(sym, times, decay, red_only=True)  # may skip yellow
            assert ((red == 2) == (bulk == 2)).all(), (sym, decay)
            seen |= set(one)
    assert seen == ({0, 1, 2} if symbols == SEVEN else {0, 1})


def test_engine_sentinel_labels_are_the_fold_of_every_moment_and_green_windows_skip_it(
        monkeypatch):
    """The engine's label at a step is the sentinel's fold over every moment of its decay
    window, whatever the steps before it — the whole label (since, until, risk, hype), through a
    crash with labels of every colour. A window that was green throughout is not folded: only
    its last moment is assessed (an engine stepping sparsely over many symbols assessed each
    window's every moment again)."""
    from mraster.ai import sentinel
    from mraster.backtest.data import ReplayData
    from mraster.sim.exchange import ticker_row

    market = replay_market(DATA, ["ETHBTC", "XLMBTC"], manual=True, warmup=WARMUP_CANDLES)
    calls = {"n": 0}
    assess = sentinel.assess

    def counted(*a, **k):  # a spy: the real assessment, counted
        calls["n"] += 1
        return assess(*a, **k)
    colours = set()
    for decay in (60.0, 7.0):
        window = [k * BASE_MS for k in range(int(decay * 60_000) // BASE_MS + 1)
                  if k * BASE_MS < decay * 60_000]
        for sym, s in market.series.items():
            times = np.arange(int(s.t[0]) - 2 * BASE_MS, int(s.t[-1]) + 2 * BASE_MS, BASE_MS)
            alone = {t: assess(ticker_row(market, sym, t))
                     for t in range(int(times[0]) - window[-1], int(times[-1]) + 1, BASE_MS)}
            want = {t: sentinel.fold_all([(t - k, alone[t - k]) for k in reversed(window)], decay)
                    for t in times.tolist()}
            colours |= {w["label"] for w in want.values()}
            for stride in (1, 13):  # every step, and an engine running on every 13th
                data = ReplayData(market, "5m", "1h")
                monkeypatch.setattr(sentinel, "assess", counted)
                calls["n"] = 0
                asked = times[::stride].tolist()
                for t in asked:
                    assert data.sentinel_label(sym, t, decay) == want[t], (sym, decay, stride, t)
                monkeypatch.setattr(sentinel, "assess", assess)
                if stride > 1 and len(window) > 2:  # each green window assessed once
                    assert calls["n"] < 0.35 * len(asked) * len(window), (sym, decay)
    assert colours == {"green", "yellow", "red"}


@pytest.mark.parametrize("variant,expect", [
    ({}, {"pass", "no_signal", "wicky", "edge_r", "oracle_gap"}),
    ({"ASTER_TREND_BIAS": "against", "ASTER_ALLOW_TREND_ALIGN": True,
      "ASTER_FUNDING_MAX_LONG": 0.00005, "ASTER_NON_ARB_SKIP_GAP": 0.01},
     {"pass", "no_signal", "trend_misaligned", "funding_long"}),
])
def test_screen_of_many_moments_equals_screen_of_each(variant, expect):
    """The bulk screen (features and quotes as arrays over the whole history) gives every
    moment the reason, side, win probability and edge the engine's one-at-a-time screen gives,
    on real candles with funding and a mark/index gap (XRPUSDT) and without (ETHBTC)."""
    from mraster.backtest.data import ReplayData
    from mraster.engine.cycle import by_symbol, snapshot
    from mraster.strategy.filters import Snapshot, reason_names, side_names
    from mraster.strategy.screen import screen
    from mraster.strategy.signals import Features

    s = {**defaults(), "ASTER_MIN_EDGE_R": 0.1, "ASTER_NON_ARB_SKIP_GAP": 0.0015, **variant}
    market = replay_market(DATA, ["ETHBTC", "XRPUSDT"], manual=True, warmup=WARMUP_CANDLES)
    sim = SimExchange(market)
    data = ReplayData(market, "5m", "1h")
    seen: dict[str, int] = {}
    for sym, series in market.series.items():
        times = series.t[WARMUP_CANDLES::7] + BASE_MS
        f, ok, rows = data.feature_table(sym, times)
        f = data.fill(sym, rows, f, ok)
        q = sim.parsed_quotes(sym, times)
        bulk = screen(f, Snapshot(bid=q["bid"], ask=q["ask"], quote_volume=q["quote_volume"],
                                  mark=q["mark"], index=q["index"], funding=q["funding"]), s)
        # an array screen's reasons and sides are a byte each, named through their tables
        assert bulk.reason.dtype == bulk.side.dtype == np.uint8
        reasons, sides = reason_names(bulk.reason), side_names(bulk.side)
        for n, t in enumerate(times.tolist()):
            if not ok[n]:
                continue
            market.clock.set(t)
            snap = snapshot(sym, by_symbol(sim.ticker_24h()), by_symbol(sim.book_ticker()),
                             by_symbol(sim.premium_index()))
            assert (snap.bid, snap.ask, snap.quote_volume, snap.mark, snap.index, snap.funding) == \
                (q["bid"][n], q["ask"][n], q["quote_volume"][n], q["mark"][n], q["index"][n],
                 q["funding"][n]), (sym, t)
            one = screen(Features(**{k: np.asarray(v)[n].item() for k, v in vars(f).items()}),
                         snap, s)
            assert (one.reason, one.side) == (reasons[n], sides[n]), (sym, t)
            assert one.win_prob == bulk.win_prob[n] and one.expected_r == bulk.expected_r[n]
            seen[one.reason or "pass"] = seen.get(one.reason or "pass", 0) + 1
    assert expect <= set(seen), seen  # passes and the reasons of every stage were compared


def test_the_replays_quotes_of_a_step_equal_those_parsed_from_the_rows():
    """An engine step of a backtest reads its quotes from the walk's blocks instead of the
    simulator's ticker, book and premium rows: at every step, over block edges, in the data
    and before it starts or after it ends, with XRPUSDT's own mark basis, index premium and
    funding settlements, every symbol's snapshot (book sizes included), 24 h quote volume (the
    universe's order) and 24 h change are the numbers the cycle parses from the rows, as the
    same doubles, and so is the step's clock."""
    from mraster.backtest.data import ReplayData
    from mraster.backtest.quotes import ReplayQuotes
    from mraster.engine.market_data import quotes_from_rows

    market = replay_market(DATA, ["ADABTC", "ETHBTC", "XRPUSDT"], manual=True,
                           warmup=WARMUP_CANDLES)
    sim, data, symbols = SimExchange(market), ReplayData(market, "5m", "1h"), sorted(market.series)
    settled = set()
    # the BTC pairs' days, then XRPUSDT's (years apart) around a change of its funding rate
    for sym, first in (("ETHBTC", WARMUP_CANDLES), ("XRPUSDT", 1500)):
        times = int(market.series[sym].t[first]) + BASE_MS * np.arange(1, 301)
        replay = ReplayQuotes(data, sim, symbols, times, block=64, changes=True)
        for k, t in enumerate(times.tolist()):
            market.clock.set(t)
            rows = quotes_from_rows(sim.ticker_24h(), sim.book_ticker(), sim.premium_index(),
                                    clock=lambda: 0)
            got = replay.at(k)
            assert got.now == rows.now == t
            for x in symbols:
                assert repr(vars(got.snapshot(x))) == repr(vars(rows.snapshot(x))), (x, t)
                assert repr((got.volume(x), got.change_pct(x))) == \
                    repr((rows.volume(x), rows.change_pct(x))), (x, t)
            settled.add(got.snapshot("XRPUSDT").funding)
            replay.forget_before(k)
            assert len(replay._blocks) == 1  # the blocks passed are dropped
    assert len(settled) > 1  # a funding settlement changed the rate


@pytest.mark.parametrize("variant,expect", [
    ({}, {"pass", "no_signal", "wicky", "edge_r", "min_qvol", "non_arb_bias_long",
          "oracle_gap"}),
    ({"ASTER_TREND_BIAS": "against", "ASTER_ALLOW_TREND_ALIGN": True,
      "ASTER_FUNDING_MAX_LONG": 0.00005, "ASTER_NON_ARB_SKIP_GAP": 0.01},
     {"pass", "no_signal", "trend_misaligned", "funding_long"}),
])
def test_the_cycles_screen_of_all_symbols_at_once_equals_screen_of_each(variant, expect):
    """The engine screens its whole universe in one array screen (``screen_each``): every
    symbol gets the reason, side, win probability and edge (plain Python values, as the state
    file and the page take them) that screening it alone gives, on the real candles of all
    eight pairs at moments through the history, with ADX worked out or left out (a backtest
    computes it only where a signal fired); so does a universe too small for the array screen."""
    from mraster.backtest.data import ReplayData
    from mraster.engine.cycle import by_symbol, snapshot
    from mraster.strategy.screen import BULK_FROM, screen, screen_each
    from mraster.strategy.signals import features

    s = {**defaults(), "ASTER_MIN_EDGE_R": 0.1, "ASTER_NON_ARB_SKIP_GAP": 0.0015, **variant}
    market = replay_market(DATA, None, manual=True, warmup=WARMUP_CANDLES)
    sim = SimExchange(market)
    data = ReplayData(market, "5m", "1h")
    pairs = []
    for n in range(200):  # (XRPUSDT's candles are of another year: each symbol at its own time)
        for sym, x in sorted(market.series.items()):
            lo = 800  # after the 60 trend candles the features need
            t = int(x.t[lo + (len(x.t) - lo - 1) * n // 200]) + BASE_MS
            market.clock.set(t)
            ltf, htf = data.candles(sym, t)
            f = features(ltf, htf) if n % 2 else data.features(sym, ltf, htf, adx_if=lambda _: False)
            assert f is not None
            pairs.append((f, snapshot(sym, by_symbol(sim.ticker_24h()), by_symbol(sim.book_ticker()),
                                      by_symbol(sim.premium_index()))))
    seen: set[str] = set()
    for batch in (pairs, pairs[:BULK_FROM], pairs[:BULK_FROM - 1], pairs[:1]):
        for (f, snap), got in zip(batch, screen_each(batch, s), strict=True):
            one = screen(f, snap, s)
            assert (got.reason, got.side, got.win_prob, got.expected_r) == \
                (one.reason, one.side, one.win_prob, one.expected_r), vars(f)
            assert type(got.win_prob) is float and type(got.expected_r) is float
            assert got.reason is None or type(got.reason) is str
            seen.add(got.reason or "pass")
    assert expect <= seen, seen
    assert screen_each([], s) == []


def test_an_array_screen_takes_a_check_that_names_one_reason_for_every_moment():
    """A check whose conditions are all single values answers one name (or None) even in an
    array screen; its reason still lands as a code in every row it is first for, so the bulk
    screen's reasons stay a byte each and name the same reason the one-at-a-time screen does."""
    from mraster.strategy.filters import first_reason, reason_names
    from mraster.strategy.screen import _first_of

    market = first_reason(("spread", np.array([True, False, False])))
    for side, want in (("funding_long", ["spread", "funding_long", "funding_long"]),
                       (None, ["spread", None, None])):
        got = _first_of(market, first_reason((side, side is not None)), None)
        assert got.dtype == np.uint8 and reason_names(got).tolist() == want
    assert _first_of(None, "edge_r", None) == "edge_r"  # one moment: the name itself


def test_the_24h_volume_sums_kept_in_blocks_equal_one_running_sum(monkeypatch):
    """The simulator keeps its running volume sums a few blocks at a time (memory), summing
    each block on from the total at its start: every value equals one cumulative sum over the
    whole file, to the last bit (real candles; small blocks, so each file spans many)."""
    from mraster.sim.market import RunningSums, read_candles_csv

    monkeypatch.setattr(RunningSums, "BLOCK", 500)
    monkeypatch.setattr(RunningSums, "KEEP", 2)
    for f in sorted(DATA.glob("*-5m*.csv")):
        t, o, h, l, c, v = read_candles_csv(f)[:6]
        full = (np.concatenate(([0.0], np.cumsum(v))), np.concatenate(([0.0], np.cumsum(v * c))))
        sums = RunningSums(v, c)
        idx = np.arange(len(v) + 1)
        for k in (0, 1):
            assert np.array_equal(sums.at(k, idx[::-1]), full[k][::-1]), f.name
            assert [sums.one(k, i) for i in idx[::37].tolist()] == full[k][::37].tolist()


def test_a_candle_file_that_is_not_utf8_text_is_named_not_crashed_on(tmp_path):
    from mraster.sim.market import DataError, read_candles_csv
    path = tmp_path / "ETH_BTC-5m.csv"
    path.write_bytes((DATA / "ETH_BTC-5m.csv").read_bytes()[:500] + b"\xff\xfe,1\n")
    with pytest.raises(DataError, match="ETH_BTC-5m.csv: not a UTF-8 text file"):
        read_candles_csv(path)


def test_a_clean_file_reads_the_same_fast_as_line_by_line(tmp_path):
    from mraster.sim.market import _parse_clean, _parse_lines
    path = DATA / "ETH_BTC-5m.csv"
    lines = path.read_text().splitlines()
    fast, slow = _parse_clean(path), _parse_lines(path, lines)
    assert all(np.array_equal(a, b) for a, b in zip(fast, slow)) and fast[0].dtype == np.int64
    unsorted = tmp_path / "ETH_BTC-5m.csv"
    unsorted.write_text("\n".join(lines[:2] + lines[3:4] + lines[2:3] + lines[4:]))
    assert _parse_clean(unsorted) is None  # bad files go the slow way, which names the line


@pytest.mark.parametrize("ai_mode", [False, True])
def test_a_backtest_loads_no_http_client_or_pydantic_and_copilots_only_in_ai_mode(tmp_path, ai_mode):
    """The backtest CLI's start-up is part of every run (and of every optimiser worker): the
    copilots and the postmortem are loaded only in AI mode; the news feed (httpx), pydantic and
    the openai client only with an LLM (a backtest has none: its copilots are the rule-based
    ones; pydantic and the client were 65 ms of AI mode's start); filelock (a backtest's documents live in
    memory) and numpy.ma (which numpy's median loads on its first call) never."""
    import subprocess
    import sys

    code = ("import sys, runpy; sys.argv = ['mraster.backtest', '--data', sys.argv[1], "
            "'--symbols', 'ETHBTC', '--from', '2018-01-25', '--out', sys.argv[2], *sys.argv[3:]]\n"
            "try:\n    runpy.run_module('mraster.backtest', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'pydantic', "
            "'openai', 'filelock') or m == 'numpy.ma' or m.startswith(('mraster.ai.copilots', "
            "'mraster.ai.postmortem', 'mraster.ai.news', 'mraster.ai.plan', 'mraster.ai.answers', "
            "'mraster.ai.llm', 'numpy.ma.'))))")
    p = subprocess.run([sys.executable, "-c", code, str(DATA), str(tmp_path / "out"),
                        *(["ASTER_AI_MODE=true"] if ai_mode else [])],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    loaded = p.stdout.strip().splitlines()[-1]
    assert loaded == ("['mraster.ai.copilots', 'mraster.ai.postmortem']" if ai_mode else "[]")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["ASTER_AI_MODE"] is ai_mode


def test_the_same_backtest_run_again_writes_the_same_files(tmp_path):
    """A backtest is reproducible to the byte: two runs of the same command, in processes whose
    string hashing differs, write the same trades, equity curve, page and journal (every row of
    every table). The journal differed in two ways: the simulator filled the stops of several
    symbols crossed in one step in the order of a set of strings (so the fills' ids changed
    from run to run), and each position's client id carried a random tag."""
    import sqlite3
    import subprocess
    import sys

    active = ["ASTER_BANDIT_ENABLED=false", "ASTER_ALPHA_ENABLED=false", "ASTER_MIN_EDGE_R=-5",
              "ASTER_RSI_BUY_MIN=51", "ASTER_RSI_SELL_MAX=49", "ASTER_MAX_DRAWDOWN=0",
              "ASTER_DAILY_LOSS_LIMIT=0", "ASTER_STREAK_STOPS=0", "ASTER_SYMBOL_STOPS=0"]

    def run(seed: str) -> dict[str, object]:
        out = tmp_path / f"out-{seed}"
        p = subprocess.run([sys.executable, "-m", "mraster.backtest", "--data", str(DATA),
                            "--from", "2018-01-12", "--to", "2018-01-13", "--out", str(out),
                            *active], cwd=Path(__file__).resolve().parents[1],
                           env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        report = json.loads((out / "report.json").read_text())
        report.pop("seconds")  # (how long it took: the one figure a run again may change)
        conn = sqlite3.connect(out / "journal.sqlite")
        try:
            journal = list(conn.iterdump())
        finally:
            conn.close()
        return {"report": report, "journal": journal,
                **{f: (out / f).read_bytes() for f in ("trades.csv", "equity.csv", "report.html")}}

    first, again = run("1"), run("2")
    assert len(first["report"]["trades"]) > 100  # several symbols' stops fill in one step
    assert any(line.startswith('INSERT INTO "fills"') for line in first["journal"])
    for part in first:
        assert first[part] == again[part], part


def test_an_alpha_model_that_vetoes_everything_keeps_learning_and_trades_again():
    """With the defaults over these seven pairs the alpha model, after a losing first day,
    vetoed every signal for good: it learned only from trades taken, so it never saw another
    outcome (41 trades on the first two days, none in the 18 after, 9,290 vetoes). It now
    also learns what the vetoed signals would have made, and the bot trades again once they
    would have won (the drawdown breaker off, so that only the policy decides)."""
    import time

    s = {**defaults(), "ASTER_MAX_DRAWDOWN": 0.0}
    start = int(time.mktime(time.strptime("2018-01-10", "%Y-%m-%d")) - time.timezone) * 1000
    res = run_backtest(DATA, s, symbols=SEVEN, end_ms=start + 8 * 86_400_000)
    days = sorted({time.strftime("%m-%d", time.gmtime(t["opened_at"] / 1000))
                   for t in res.state["history"]})
    assert days[-1] >= "01-15", days  # it used to stop on 01-12
    alpha = res.state["policy"]["alpha"]
    assert alpha["count"] > 3 * len(res.state["history"])  # vetoed signals taught it too
    off = run_backtest(DATA, {**s, "ASTER_ALPHA_SHADOW": False}, symbols=SEVEN,
                       end_ms=start + 8 * 86_400_000)
    assert off.state["policy"]["alpha"]["count"] == len(off.state["history"])  # the setting
