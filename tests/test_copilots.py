"""Postmortems, the parameter tuner and the playbook: rule-based over real candles (backtest in AI
mode, no key), refined by an LLM through the real openai client against the OpenAI-compatible test
server on 127.0.0.1; and the daily budget shared by separate processes."""
from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as hs

from mraster import settings as st
from mraster.ai import budget as B
from mraster.ai import playbook as PB
from mraster.ai import tuner as TU
from mraster.ai.copilots import Copilots
from mraster.ai.llm import LLMClient
from mraster.sim.serve import ThreadedServer
from mraster.store import JsonDocument
from mraster.words import Words
from openai_stub import create_stub


def settings(**over) -> st.Settings:
    env = {"ASTER_MODE": "ai", **{k: str(v) for k, v in over.items()}}
    return st.load(environ=env, env_file=Path("/none"))


def test_rule_based_copilots_learn_from_every_trade_of_a_backtest(data_dir):
    from mraster.backtest.runner import run_backtest

    res = run_backtest(data_dir, settings(), symbols=["ETHBTC", "ADABTC"], last_days=2)
    hist, book = res.state["history"], res.state["copilots"]
    assert len(hist) >= 5
    # every closed trade was reviewed; its symbol carries the distilled features
    assert len(book["trades"]) == len(hist)
    assert {r["symbol"] for r in book["reviews"]} == {t["symbol"] for t in hist}
    for sym, e in book["postmortem"].items():
        assert -1 <= e["edge"] <= 1 and e["trades"] >= 1 and e["lesson"] and e["source"] == "rules"
        # the measured features, from the fills and the candles each trade lived through
        assert e["mae_r"] >= 0 and e["mfe_r"] >= 0 and e["minutes_held"] > 0
        assert 0 <= e["stop_rate"] <= 1 and 0 <= e["tp_rate"] <= 1 and e["fees_r"] > 0
        assert e["slippage_bps"] is not None and e["last_regime"] in ("bullish", "bearish", "mixed", "shock")
    stopped = [r for r in book["reviews"] if r["measured"]["stop_rate"]]
    assert stopped and all(r["measured"]["mae_r"] >= 0.9 for r in stopped)  # a stop is ~1 R against
    losers = [r for r in book["reviews"] if r["r"] < 0]
    assert losers and all(r["score"] < 0 for r in losers)
    # the tuner only shrinks, the playbook is current and only lowers size
    t = book["tuner"]
    assert t["trades"] == len(hist) and all(0.5 <= v <= 1.0 for v in t["size_bias"].values())
    pb = book["playbook"]
    assert pb["regime"] in ("bullish", "bearish", "mixed", "shock") and pb["directives"]
    assert all(0 < v <= 1 for v in pb["size_factor"].values())
    assert res.end_ms - pb["at"] <= 20 * 60_000 + 5 * 60_000  # refreshed every 20 minutes


@hsettings(max_examples=60, deadline=None)
@given(hs.lists(hs.fixed_dictionaries({
    "r": hs.floats(-50, 50), "bucket": hs.sampled_from(["S", "M", "L", None]),
    "reason": hs.sampled_from(["stop", "take_profit", "closed", "manual"])}), max_size=120))
def test_the_tuner_stays_inside_its_ranges_whatever_the_trades(trades):
    t = TU.tune(trades)
    assert all(TU.SIZE_RANGE[0] <= v <= TU.SIZE_RANGE[1] for v in t["size_bias"].values())
    assert TU.SL_RANGE[0] <= t["sl_bias"] <= TU.SL_RANGE[1]
    assert TU.TP_RANGE[0] <= t["tp_bias"] <= TU.TP_RANGE[1]


def test_the_playbook_rules_cut_the_side_against_the_market_and_both_in_a_shock():
    up = {f"S{i}": {"change_pct": 3.0} for i in range(8)} | {"S9": {"change_pct": -1.0}}
    pb = PB.rule_playbook(PB.overview(up, {}, []))
    assert pb["regime"] == "bullish" and pb["size_factor"] == {"BUY": 1.0, "SELL": 0.7}
    shock = PB.rule_playbook(PB.overview(up, {"S1": {"label": "red"}}, [{"r": -1}] * 5))
    assert shock["regime"] == "shock" and shock["size_factor"]["BUY"] == pytest.approx(0.48)


def test_a_trade_is_measured_from_the_candles_it_lived_through(data_dir):
    from mraster.ai import postmortem as PM
    from mraster.sim.market import read_candles_csv
    from mraster.strategy.signals import Candles

    t, o, h, l, c, v = read_candles_csv(data_dir / "XRPUSDT-5m-futures.csv")
    k = 500  # a long opened at the close of candle k, held for 24 candles
    entry, stop = float(c[k]), float(c[k]) * 0.99
    trade = {"symbol": "XRPUSDT", "side": "BUY", "entry": entry, "initial_stop": stop, "qty": 100.0,
             "opened_at": int(t[k]) + 300_000, "closed_at": int(t[k + 24]) + 300_000,
             "r": 0.5, "fees": 0.08, "funding": -0.02}
    m = PM.measure(trade, Candles(t, o, h, l, c, v), quote=entry * 0.9999)
    risk = entry - stop
    lows, highs = l[k + 1:k + 25], h[k + 1:k + 25]
    assert m["mae_r"] == pytest.approx(max(0.0, entry - lows.min()) / risk, abs=1e-4)
    assert m["mfe_r"] == pytest.approx(max(0.0, highs.max() - entry) / risk, abs=1e-4)
    assert m["minutes_held"] == 120 and m["slippage_bps"] == pytest.approx(1.0, abs=1e-3)
    assert m["fees_r"] == pytest.approx(0.08 / (risk * 100), abs=1e-4)
    assert m["funding_r"] < 0 and m["exit_efficiency"] == pytest.approx(min(1, 0.5 / m["mfe_r"]), abs=1e-3)
    book: dict = {}
    for _ in range(2):
        PM.learn(book, PM.rule_review(trade, m))
    f = PM.features(book, "XRPUSDT")
    assert set(PM.NUMERIC) <= set(f) and len(f) >= 15 and f["trades"] == 2
    assert f["mae_r"] == pytest.approx(m["mae_r"], abs=1e-4)  # the same trade twice: its value


def test_a_policy_saved_before_the_postmortem_features_loads_padded():
    from mraster.policy import FEATURES, BanditPolicy

    old_names = [n for n in FEATURES if n not in ("pm_mae", "pm_exit_eff", "pm_slippage")]
    old = BanditPolicy(names=tuple(old_names))
    feats = {n: 0.5 for n in old_names}
    old.learn(feats, "TAKE-S", 1.0)
    new = BanditPolicy().load(old.to_dict())
    assert new.names == FEATURES
    a_old, a_new = old.arms["TAKE-S"], new.arms["TAKE-S"]
    i_old, i_new = old_names.index("rsi_dist"), FEATURES.index("rsi_dist")
    assert a_new.b[i_new] == a_old.b[i_old] and a_new.n == a_old.n == 1
    assert a_new.b[FEATURES.index("pm_mae")] == 0  # a new feature starts fresh


def test_the_playbook_can_block_tighten_and_bias_only_toward_less_risk():
    one_way = {f"S{i}": {"change_pct": 3.0} for i in range(19)} | {"S19": {"change_pct": -1.0}}
    history = [{"symbol": "ETHUSDT", "reason": "stop", "r": -1.0}] * 2
    pb = PB.rule_playbook(PB.overview(one_way, {}, history), now_ms=1_000, hours=2)
    assert {(b["side"], b["symbol"]) for b in pb["blocks"]} == {("SELL", None), (None, "ETHUSDT")}
    assert all(b["until"] == 1_000 + 2 * 3_600_000 and b["reason"] for b in pb["blocks"])
    assert any("no new shorts" in d for d in pb["directives"])
    assert PB.blocked(pb, "BTCUSDT", "SELL", 2_000)["side"] == "SELL"
    assert PB.blocked(pb, "BTCUSDT", "BUY", 2_000) is None
    assert PB.blocked(pb, "ETHUSDT", "BUY", 2_000)["symbol"] == "ETHUSDT"
    assert PB.blocked(pb, "ETHUSDT", "BUY", 1_000 + 2 * 3_600_000) is None  # expired
    shock = PB.rule_playbook(PB.overview(one_way, {"S1": {"label": "red"}}, [{"r": -1}] * 5))
    s = {"ASTER_SPREAD_BPS_MAX": 0.001, "ASTER_WICKINESS_MAX": 0.97, "ASTER_MIN_EDGE_R": 0.1}
    t = PB.tightened(s, shock)
    assert t["ASTER_SPREAD_BPS_MAX"] == pytest.approx(0.0007)
    assert t["ASTER_WICKINESS_MAX"] == pytest.approx(0.873)
    assert t["ASTER_MIN_EDGE_R"] == pytest.approx(0.15) and shock["bias"]["tp"] == 0.9
    assert PB.tightened(s, {"tighten": {}}) is s


def test_the_rule_based_copilots_speak_the_readers_language():
    """The AI tab's playbook, its blocks and the postmortem lessons are kept as words too: a
    German page reads them in German (they were English sentences); the English text, which
    the LLM advisor also reads, is unchanged."""
    from mraster.ai import postmortem as PM
    from mraster.words import speaker

    de = speaker("de")
    one_way = {f"S{i}": {"change_pct": 3.0} for i in range(19)} | {"S19": {"change_pct": -1.0}}
    pb = PB.rule_playbook(PB.overview(one_way, {}, [{"symbol": "ETHUSDT", "reason": "stop",
                                                     "r": -1.0}] * 2), now_ms=1_000)
    assert pb["directives"][0] == "95% of the market is up over 24 h: shorts at 70 % size."
    german = [de(w["template"], **w["params"]) for w in pb["directives_words"]]
    assert german[0] == "95 % des Marktes liegen über 24 h im Plus: Shorts mit 70 % Größe."
    assert "2 Stop-outs in Folge auf ETHUSDT: Es setzt aus" in german
    assert [de(b["reason_words"]["template"], **b["reason_words"]["params"])
            for b in pb["blocks"]][0].endswith("keine neuen Shorts")
    review = PM.rule_review({"symbol": "ETHUSDT", "reason": "take_profit", "r": 1.5,
                             "opened_at": 0, "closed_at": 45 * 60_000})
    assert review["lesson"] == "take-profit reached after 45 min at +1.50 R: the setup worked"
    w = PM.learn({}, review)["lesson_words"]
    assert de(w["template"], **w["params"]) == \
        "Take-Profit nach 45 min bei 1,5 R erreicht: Das Setup hat funktioniert"


def test_the_bot_skips_what_the_playbook_blocks(sim_factory, tmp_path):
    """AI mode without a key, over HTTP: a playbook that blocks longs and shorts for an hour
    turns every candidate the policy would take into playbook_block, said with its reason."""
    from conftest import bot_settings
    from mraster.engine.runner import run_async

    sim, url, _ = sim_factory(n=12, seed=11)
    now = sim.now()
    blocks = [{"side": side, "symbol": None, "until": now + 3_600_000, "reason": f"test {side}"}
              for side in ("BUY", "SELL")]
    s = bot_settings(tmp_path, url, ASTER_MODE="ai")
    JsonDocument(s["ASTER_STATE_FILE"]).write({"copilots": {"playbook": {
        "regime": "mixed", "directives": [], "size_factor": {"BUY": 1.0, "SELL": 1.0},
        "blocks": blocks, "tighten": {}, "bias": {"sl": 1.0, "tp": 1.0}, "source": "rules",
        "at": now}}})
    assert asyncio.run(run_async(s)) == 0
    state = json.loads(Path(s["ASTER_STATE_FILE"]).read_text())
    blocked = {k: d for k, d in state["decisions"].items() if d["reason"] == "playbook_block"}
    assert blocked and not state["positions"]
    assert all(d["playbook"] == f"test {d['side']}" and "playbook blocks" in d["why"]
               for d in blocked.values())


@pytest.fixture
def stub():
    app = create_stub()
    with ThreadedServer(app) as srv:
        yield app, f"{srv.url}/v1"


def trade(i: int, r: float) -> dict:
    return {"symbol": "XRPUSDT", "side": "BUY", "entry": 1.0, "exit": 1.0 + r / 100,
            "initial_stop": 0.99, "take_profit": 1.02, "r": r, "opened_at": i * 3_600_000,
            "closed_at": i * 3_600_000 + 5 * 60_000, "reason": "stop" if r < 0 else "take_profit",
            "fees": 0.01, "funding": 0.0}


def test_llm_reviews_tuning_and_playbook_are_paid_clamped_and_logged(stub):
    app, url = stub
    app.state.by_topic = {
        "review one closed": {"kind": "ok", "plan": {"score": -0.5, "lesson": "Entered after a "
                                                     "three-candle run; wait for a pullback."}},
        "You tune": {"kind": "ok", "plan": {"size_bias": {"S": 5, "M": 0.2, "L": 0.9},
                                            "sl_bias": 0.1, "tp_bias": 9, "note": "be bolder"}},
        "keep the trading playbook": {"kind": "ok", "plan": {
            "regime": "bearish", "directives": ["Prefer shorts."], "size_factor": {"BUY": 3, "SELL": 0.1},
            "blocks": [{"side": "BUY", "hours": 500, "reason": "breadth collapsing"},
                       {"hours": 2, "reason": "blocks nothing"}],
            "tighten": {"ASTER_SPREAD_BPS_MAX": 3.0, "ASTER_MIN_EDGE_R": -1, "ASTER_LEVERAGE": 50},
            "bias": {"sl": 5, "tp": 0.1}, "note": "breadth is weak"}},
    }
    s = settings(ASTER_AI_TUNER_MIN_TRADES=3)
    ledger: dict = {}

    async def go():
        llm = LLMClient(api_key="sk-test-not-a-real-key", model="gpt-4.1", base_url=url, timeout=10)
        cp = Copilots(s, {}, llm=llm, budget=B.daily_budget(s, ledger))
        for i, r in enumerate((-1.0, 0.5, -1.2)):
            cp.after_close(trade(i, r), "S")
        cp.refresh_playbook(10_000_000, {"XRPUSDT": {"change_pct": -2.0}}, {}, [])
        while cp.tasks:  # background requests; the scan loop never waits for them
            await asyncio.gather(*cp.tasks)
        await llm.close()
        return cp.book
    book = asyncio.run(go())
    assert [r["source"] for r in book["reviews"]] == ["ai"] * 3
    assert book["postmortem"]["XRPUSDT"]["lesson"].startswith("Entered after")
    t = book["tuner"]
    assert t["source"] == "ai" and t["size_bias"] == {"S": 1.0, "M": 0.5, "L": 0.9}
    assert (t["sl_bias"], t["tp_bias"]) == (0.8, 1.3)  # clamped to the tuner's ranges
    assert book["tuner_log"][-1]["note"] == "be bolder"
    pb = book["playbook"]
    assert pb["source"] == "ai" and pb["size_factor"] == {"BUY": 1.0, "SELL": 0.3}
    # a block lasts at most a day; tightening only ever tightens, and only filters
    assert [(b["side"], b["until"] - 10_000_000) for b in pb["blocks"]] == [("BUY", 24 * 3_600_000)]
    assert pb["tighten"] == {"ASTER_SPREAD_BPS_MAX": 1.0, "ASTER_MIN_EDGE_R": 0.0}
    assert pb["bias"] == {"sl": 1.25, "tp": 0.8}
    kinds = B.DailyBudget(ledger, 0).snapshot()["kinds"]
    assert kinds["postmortem"]["calls"] == 3 and kinds["tuning"]["calls"] == 1
    assert kinds["playbook"]["calls"] == 1 and len(app.state.requests) == 5


def _reserve_many(path: str, limit: float, n: int, out) -> None:
    budget = B.DailyBudget(B.SectionLedger(JsonDocument(path)), limit)
    out.put(sum(1 for _ in range(n) if budget.reserve(1.0) is not None))


def test_one_daily_limit_holds_across_processes(tmp_path):
    """The bot's advisor and the dashboard's chat are separate processes sharing the limit."""
    path = str(tmp_path / "aster_state.json")
    JsonDocument(path).write({"positions": {"keep": 1}})
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(path, 10.0, 8, out)) for _ in range(3)]
    for p in procs:
        p.start()
    granted = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert granted == 10  # 24 asked for, exactly the 10 the limit allows
    doc = json.loads(Path(path).read_text())
    assert doc["positions"] == {"keep": 1} and len(doc["ai_budget"]["reservations"]) == 10


def test_todays_spend_from_an_older_state_file_still_counts(sim_factory, tmp_path):
    """Before the shared ledger the bot kept its budget in ai_ledger; an upgrade on the same day
    must not hand out the limit a second time."""
    from conftest import bot_settings
    from mraster.engine.runner import run_async

    _, url, _ = sim_factory(n=6, seed=11)
    s = bot_settings(tmp_path, url, ASTER_MODE="ai", ASTER_AI_DAILY_BUDGET_USD=1)
    JsonDocument(s["ASTER_STATE_FILE"]).write({"ai_ledger": {"budget": {
        "day": B.utc_day(), "spent": 0.75, "calls": 30, "models": {}}}})
    assert asyncio.run(run_async(s)) == 0
    state = json.loads(Path(s["ASTER_STATE_FILE"]).read_text())
    assert state["ai_budget"]["spent"] == 0.75 and "budget" not in state["ai_ledger"]
    assert B.daily_budget(s, B.SectionLedger(JsonDocument(s["ASTER_STATE_FILE"]))).reserve(0.3) is None


def test_a_rule_lesson_goes_to_the_journal_with_its_words():
    """The postmortem event carries the rule's lesson as words too: the journal keeps them and
    the History shows the lesson in the reader's language (it was English on a German page)."""
    events = []
    cp = Copilots(settings(), {}, emit=lambda event, **data: events.append((event, data)))
    cp.after_close(trade(1, -1.0), "S")
    [pm] = [d for e, d in events if e == "postmortem"]
    assert pm["lesson_words"]["template"].startswith("stopped out after {minutes} min")
    assert pm["lesson"] == str(Words.from_dict(pm["lesson_words"]))


def test_a_review_cut_off_by_shutdown_is_still_learned_by_the_rules(stub):
    app, url = stub
    app.state.by_topic = {"review one closed": {"kind": "ok", "delay": 30,
                                               "plan": {"score": 0.9, "lesson": "late"}}}
    s = settings()

    async def go():
        llm = LLMClient(api_key="sk-test-not-a-real-key", model="gpt-4.1", base_url=url, timeout=60)
        cp = Copilots(s, {}, llm=llm, budget=B.daily_budget(s, {}))
        cp.after_close(trade(1, -1.0), "S")
        await cp.close(grace_s=0.2)  # the bot stops while the review is still on its way
        await llm.close()
        return cp.book
    book = asyncio.run(go())
    assert [r["source"] for r in book["reviews"]] == ["rules"]
    assert book["postmortem"]["XRPUSDT"]["trades"] == 1


def test_llm_problems_and_task_failures_are_shown_not_only_logged(stub):
    app, url = stub
    app.state.by_topic = {"keep the trading playbook": {"kind": "malformed"}}
    s = settings()
    notices = []

    async def go():
        llm = LLMClient(api_key="sk-test-not-a-real-key", model="gpt-4.1", base_url=url, timeout=10)
        cp = Copilots(s, {}, llm=llm, budget=B.daily_budget(s, {}),
                      alert=lambda level, message, symbol=None: notices.append((level, str(message))))
        cp.refresh_playbook(10_000_000, {"XRPUSDT": {"change_pct": 1.0}}, {}, [])

        async def broken():
            raise RuntimeError("boom")
        cp._spawn(broken())
        while cp.tasks:
            await asyncio.wait(list(cp.tasks))
        await llm.close()
        return cp.book
    book = asyncio.run(go())
    assert book["playbook"]["source"] == "rules"  # the rules stood in
    assert book["llm_problem"]["kind"] == "playbook" and "not a valid playbook" in book["llm_problem"]["why"]
    assert notices and notices[0][0] == "error" and "boom" in notices[0][1]
