"""The AI advisor through the real openai client against an OpenAI-compatible test server on
127.0.0.1: validated and clamped plans, the strict daily budget under concurrency, timeouts,
cache, pending limit; and the bot in AI mode (with and without a key)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mraster import settings as st
from mraster.ai import budget as B
from mraster.ai.advisor import Advisor
from mraster.ai.llm import LLMClient
from mraster.sim.serve import ThreadedServer
from openai_stub import PLAN, create_stub, script

MODEL = "gpt-4.1"
CALL_COST = B.cost(MODEL, 1000, 200)  # what the stub's usage numbers cost


@pytest.fixture
def stub():
    app = create_stub()
    with ThreadedServer(app) as srv:
        yield app, f"{srv.url}/v1"


def settings(**over) -> st.Settings:
    env = {"ASTER_AI_MODE": "true", "ASTER_AI_GLOBAL_COOLDOWN_SECONDS": "0",
           **{k: str(v) for k, v in over.items()}}
    return st.load(environ=env, env_file=Path("/none"))


def advisor(url: str, s: st.Settings, ledger: dict | None = None, timeout: float | None = None):
    llm = LLMClient(api_key="sk-test-not-a-real-key", model=MODEL, base_url=url, timeout=10)
    budget = B.DailyBudget({} if ledger is None else ledger, s["ASTER_AI_DAILY_BUDGET_USD"],
                           strict=s["ASTER_AI_STRICT_BUDGET"], enforced=s.ai_budget_enforced)
    return Advisor(llm, s, budget, timeout_s=timeout)


async def settle(adv: Advisor, keys: list[str], payloads: list[dict], limit_s: float = 20):
    """Ask for verdicts until every candidate has one (the engine does this once per cycle)."""
    out: dict[str, object] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while len(out) < len(keys):
        for k, p in zip(keys, payloads):
            if k not in out:
                v = adv.verdict(k, p["symbol"], p)
                if v is not None:
                    out[k] = v
        if loop.time() > deadline:
            raise AssertionError(f"no verdict for {set(keys) - set(out)}")
        await asyncio.sleep(0.01)  # yield to the request tasks (the scan loop's next cycle)
    return out


def two_in_a_row(url: str):
    """Two candidates reviewed one after the other: (first plan, second plan, budget)."""
    async def go():
        adv = advisor(url, settings())
        first = (await settle(adv, ["a"], [payload(1)]))["a"]
        second = (await settle(adv, ["b"], [payload(2)]))["b"]
        await adv.close()
        return first, second, adv.budget.snapshot()
    return asyncio.run(go())


def payload(i: int) -> dict:
    return {"symbol": f"SYM{i}USDT", "side": "BUY", "price": 100.0 + i, "rsi": 60.0}


def test_plans_are_validated_and_clamped_to_the_users_limits(stub):
    app, url = stub
    script(app, {"kind": "ok", "plan": {**PLAN, "size_multiplier": 9, "leverage": 125,
                                        "sl_multiplier": 10, "confidence": "80%",
                                        "fasttp": {"enabled": False, "min_r": 0.01, "snap_atr": 5}}})
    s = settings(ASTER_LEVERAGE=7)

    async def go():
        adv = advisor(url, s)
        v = (await settle(adv, ["a"], [payload(1)]))["a"]
        await adv.close()
        return v, adv.budget.snapshot()
    plan, snap = asyncio.run(go())
    assert plan.take and plan.source == "ai"
    assert plan.size_multiplier == 1.0 and plan.leverage == 7 and plan.sl_multiplier == 2.0
    assert plan.confidence == pytest.approx(0.8)
    # FastTP may be switched on but not off (it only takes profit earlier); thresholds bounded
    assert plan.fasttp.model_dump() == {"enabled": True, "min_r": 0.1, "snap_atr": 1.0}
    assert snap["spent"] == pytest.approx(CALL_COST) and snap["calls"] == 1
    sent = app.state.requests[0]
    assert sent["model"] == MODEL and sent["response_format"]["type"] == "json_schema"
    fields = sent["response_format"]["json_schema"]["schema"]["properties"]
    assert {"take", "size_multiplier", "leverage", "fasttp"} <= set(fields) and "source" not in fields


def test_a_server_without_structured_output_gets_plain_json_and_it_is_validated(stub):
    app, url = stub
    app.state.schema_support = False
    script(app, {"kind": "ok", "plan": {**PLAN, "source": "cache"}})

    first, second, snap = two_in_a_row(url)
    assert first.source == second.source == "ai"  # the model cannot claim another source
    kinds = [r["response_format"]["type"] for r in app.state.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]  # refused once, then remembered
    assert snap["calls"] == 2 and snap["spent"] == pytest.approx(2 * CALL_COST)


def test_a_malformed_reply_gets_one_retry_then_the_rule_based_plan(stub):
    app, url = stub
    script(app, {"kind": "malformed"}, {"kind": "ok"}, {"kind": "malformed"}, {"kind": "malformed"})

    first, second, snap = two_in_a_row(url)
    assert first.source == "ai"            # the retry succeeded
    assert second.source == "fallback" and "not a valid plan" in second.explanation
    assert len(app.state.requests) == 4
    assert snap["spent"] == pytest.approx(3 * CALL_COST + 0, abs=CALL_COST)  # every attempt is paid


def test_the_strict_budget_is_never_exceeded_with_concurrent_requests(stub):
    app, url = stub
    for _ in range(10):
        script(app, {"kind": "ok", "delay": 0.2})
    # room for a few calls, not for ten; all ten are asked for at the same moment
    s = settings(ASTER_AI_DAILY_BUDGET_USD=round(CALL_COST * 4.5, 6), ASTER_AI_CONCURRENCY=10,
                 ASTER_AI_PENDING_LIMIT=20)

    async def go():
        adv = advisor(url, s)
        verdicts = await settle(adv, [str(i) for i in range(10)], [payload(i) for i in range(10)])
        await adv.close()
        return verdicts, adv.budget.snapshot()
    verdicts, snap = asyncio.run(go())
    assert snap["spent"] <= s["ASTER_AI_DAILY_BUDGET_USD"]  # reserved before, settled after
    assert 1 <= len(app.state.requests) <= 4
    refused = [v for v in verdicts.values() if v.source == "fallback" and "budget" in v.explanation]
    assert len(refused) == 10 - len(app.state.requests)


def test_high_and_att_ignore_the_limit_but_record_the_spend(stub):
    app, url = stub
    s = settings(ASTER_PRESET_MODE="att", ASTER_AI_DAILY_BUDGET_USD=0.0001)

    async def go():
        adv = advisor(url, s)
        await settle(adv, ["a", "b"], [payload(1), payload(2)])
        await adv.close()
        return adv.budget.snapshot()
    snap = asyncio.run(go())
    assert snap["enforced"] is False and snap["calls"] == 2 and snap["spent"] > snap["limit"]


def test_a_slow_answer_times_out_to_the_rule_based_plan_and_the_loop_never_waits(stub):
    app, url = stub
    script(app, {"kind": "ok", "delay": 3})

    async def go():
        adv = advisor(url, settings(), timeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert adv.verdict("a", "SYM1USDT", payload(1)) is None  # returns at once: pending
        assert loop.time() - t0 < 0.05
        v = (await settle(adv, ["a"], [payload(1)]))["a"]
        await adv.close()
        return v, adv.budget.snapshot()
    plan, snap = asyncio.run(go())
    assert plan.source == "fallback" and "within 0.3 s" in plan.explanation
    assert snap["spent"] > 0  # the cut-off call is assumed billed


def test_identical_requests_are_served_from_the_cache_at_no_cost(stub):
    app, url = stub

    async def go():
        adv = advisor(url, settings())
        await settle(adv, ["a"], [payload(1)])
        spent = adv.budget.snapshot()["spent"]
        again = adv.verdict("a-next-candle", "SYM1USDT", payload(1))
        await adv.close()
        return spent, again, adv.budget.snapshot()["spent"]
    spent, again, after = asyncio.run(go())
    assert again is not None and again.source == "cache"
    assert after == spent and len(app.state.requests) == 1


def test_the_pending_limit_holds(stub):
    app, url = stub
    app.state.default = {"kind": "ok", "delay": 0.5, "plan": PLAN}
    s = settings(ASTER_AI_CONCURRENCY=1, ASTER_AI_PENDING_LIMIT=2)

    async def go():
        adv = advisor(url, s)
        first = [adv.verdict(str(i), f"SYM{i}USDT", payload(i)) for i in range(6)]
        pending = adv._pending()
        await adv.close()
        return first, pending
    first, pending = asyncio.run(go())
    assert pending == 2 and first[:2] == [None, None]
    assert all(v.source == "fallback" and "queue is full" in v.explanation for v in first[2:])


def _bot_settings(tmp_path: Path, url: str, **extra) -> st.Settings:
    from conftest import bot_settings

    return bot_settings(tmp_path, url, **{"ASTER_MODE": "ai", "ASTER_AI_GLOBAL_COOLDOWN_SECONDS": 0,
                                          **extra})


def test_the_bot_in_ai_mode_waits_for_the_review_then_trades_the_clamped_plan(sim_factory, stub,
                                                                               tmp_path):
    from mraster.engine.cycle import Engine
    from mraster.exchange.rest import AsterRest
    from mraster.store import JsonDocument

    app, ai_url = stub
    script(app, {"kind": "ok", "plan": {**PLAN, "take": False, "explanation": "Funding against."}})
    sim, url, _ = sim_factory(n=12, seed=11)
    s = _bot_settings(tmp_path, url, ASTER_AI_BASE_URL=ai_url)

    async def go():
        from mraster.ai.advisor import advisor_from_settings
        from mraster.ai.copilots import Copilots
        async with AsterRest(url, s["ASTER_API_KEY"], s["ASTER_API_SECRET"]) as c:
            state: dict = {}
            eng = Engine(c, s, state, JsonDocument(tmp_path / "q.json", default=lambda: {"items": {}}),
                         lambda *a, **k: None)
            eng.advisor = advisor_from_settings(s, {}, lambda *a, **k: None)
            eng.copilots = Copilots(s, state.setdefault("copilots", {}))
            await eng.cycle()
            first = dict(state["decisions"])
            while eng.advisor._pending():
                await asyncio.sleep(0.01)  # the reviews finish while the loop waits for its next cycle
            await eng.cycle()
            await eng.advisor.close()
            return first, state
    first, state = asyncio.run(go())
    pending = [k for k, d in first.items() if d["reason"] == "ai_pending"]
    assert pending and not any(d["action"] == "TAKE" for d in first.values())
    vetoed = [d for d in state["decisions"].values() if d["reason"] == "ai_veto"]
    taken = [d for d in state["decisions"].values() if d["action"] == "TAKE"]
    assert len(vetoed) == 1 and vetoed[0]["ai"] == "Funding against."
    assert taken and all(d["ai_source"] in ("ai", "cache") for d in taken)
    for p in state["positions"].values():
        assert p.leverage <= 5  # the plan's leverage, below the user's 10
        assert p.ai and p.fasttp == {"enabled": True, "min_r": 0.2}  # the plan's FastTP
    assert state["ai"]["budget"]["calls"] == len(app.state.requests)
    sent = json.loads(app.state.requests[0]["messages"][1]["content"])
    assert sent["playbook"]["regime"] == state["copilots"]["playbook"]["regime"]  # with every payload
    from mraster.ai.postmortem import NUMERIC
    assert set(sent["postmortem"]) == {"edge", "quick_stop_rate", "trades", "lesson",
                                       "last_regime", "last_hour", *NUMERIC}
    assert set(sent["tuning"]["size_bias"]) == {"S", "M", "L"}
    book = sent["orderbook"]
    assert book["imbalance"] == 0.0 and book["spread_bps"] > 0
    # depth from the book the simulator serves, fetched for the question, with the planned size
    from mraster.strategy.orderbook import book_context
    depth = sim.depth(sent["symbol"], 50)
    assert book == {**book, **book_context(depth["bids"], depth["asks"], sent["side"],
                                           book["planned_qty"])}
    assert book["planned_qty"] > 0 and book["fillable"] and book["slippage_bps"] >= 0
    assert book["depth_0.5pct"]["bid_qty"] > 0 and book["imbalance_by_level"]["5"] == 0.0
    assert sent["budget"]["limit"] == s["ASTER_AI_DAILY_BUDGET_USD"] and "remaining" in sent["budget"]


def test_a_single_run_waits_for_the_reviews_it_paid_for_and_acts_on_them(sim_factory, stub, tmp_path):
    """ASTER_RUN_ONCE in AI mode: without the wait every candidate would stay ai_pending and the
    process would exit with paid answers nobody reads."""
    from mraster.engine.runner import run_async

    app, ai_url = stub
    _, url, _ = sim_factory(n=8, seed=11)
    s = _bot_settings(tmp_path, url, ASTER_AI_BASE_URL=ai_url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    plans = [r for r in app.state.requests if "trade candidate" in r["messages"][0]["content"]]
    asked = {json.loads(r["messages"][1]["content"])["symbol"] for r in plans}
    assert asked and state["ai_budget"]["kinds"]["plan"]["calls"] == len(plans)
    for sym in asked:  # every paid review was acted on
        assert state["decisions"][sym]["reason"] != "ai_pending", state["decisions"][sym]
    taken = [p for p in state["positions"].values()]
    assert taken and all(p["ai_source"] in ("ai", "cache") for p in taken)


def test_without_a_key_ai_mode_is_rule_based_and_says_so(sim_factory, tmp_path):
    from mraster.engine.runner import run_async

    _, url, _ = sim_factory(n=12, seed=11)
    s = _bot_settings(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["ai"]["status"] == "off" and "rule-based" in state["ai"]["why"]
    assert state["positions"]  # the rule-based decisions trade as usual


@pytest.mark.parametrize("fault,error", [("429", "RateLimitError"), ("500", "InternalServerError")])
def test_service_errors_fall_back_to_the_rule_based_plan(stub, fault, error):
    app, url = stub
    script(app, {"kind": fault})

    async def go():
        adv = advisor(url, settings())
        v = (await settle(adv, ["a"], [payload(1)]))["a"]
        await adv.close()
        return v
    plan = asyncio.run(go())
    assert plan.source == "fallback" and error in plan.explanation
    assert len(app.state.requests) == 1  # no silent retries: every attempt would be paid for


def test_the_budget_learner_pauses_calls_for_symbols_where_the_ai_did_not_pay(stub):
    app, url = stub
    learner = B.BudgetLearner({}, min_trades=3, pause_hours=24)
    now = 1_700_000_000_000
    learner.spent("LOSERUSDT", 0.05)
    for pnl in (0.01, -0.02, 0.015):  # three reviewed trades earned 0.005 against 0.05 of calls
        learner.traded("LOSERUSDT", pnl, now)
    learner.spent("WINNERUSDT", 0.05)
    for pnl in (1.0, -0.2, 0.5):
        learner.traded("WINNERUSDT", pnl, now)
    assert not learner.allows("LOSERUSDT", now) and learner.allows("WINNERUSDT", now)
    assert learner.allows("LOSERUSDT", now + 25 * 3_600_000)  # then a clean slate

    async def go():
        adv = advisor(url, settings())
        adv.learner = B.BudgetLearner({"SYM1USDT": {"cost": 0, "pnl": 0, "trades": 0,
                                                    "paused_until": 2**62}})
        v = adv.verdict("a", "SYM1USDT", payload(1))
        snap = adv.snapshot()
        await adv.close()
        return v, snap
    plan, snap = asyncio.run(go())
    assert plan.source == "fallback" and "paused" in plan.explanation
    assert app.state.requests == [] and snap["paused_symbols"] == ["SYM1USDT"]


def test_debug_state_dumps_payloads_and_plans_without_secrets(stub, tmp_path):
    from mraster.ai.advisor import advisor_from_settings
    from mraster.logs import register_secrets

    app, url = stub
    key = "sk-proj-SECRETSECRETSECRET1234"
    register_secrets([key])
    s = settings(ASTER_AI_BASE_URL=url, ASTER_OPENAI_API_KEY=key, ASTER_AI_DEBUG_STATE="true",
                 ASTER_STATE_FILE=str(tmp_path / "aster_state.json"))

    app.state.by_topic = {"review one closed": {"kind": "ok", "plan": {"score": 0.1, "lesson": "ok"}}}

    async def go():
        from mraster.ai.copilots import Copilots

        adv = advisor_from_settings(s, {}, lambda *a, **k: None)
        await settle(adv, ["a"], [{**payload(1), "note": f"key {key}"}])
        cp = Copilots(s, {}, llm=adv.llm, budget=adv.budget)  # the copilots' calls are dumped too
        cp.after_close({"symbol": "SYM1USDT", "r": 1.0, "reason": "take_profit", "opened_at": 0,
                        "closed_at": 600_000}, "S")
        await cp.close()
        await adv.close()
    asyncio.run(go())
    text = (tmp_path / "ai_debug.jsonl").read_text()
    plan, review = (json.loads(x) for x in text.splitlines())
    assert plan["kind"] == "plan" and plan["symbol"] == "SYM1USDT" and plan["cost"] > 0
    assert plan["reply"]["take"] is True and "SYM1USDT" in plan["user"]
    assert review["kind"] == "postmortem" and review["reply"]["lesson"] == "ok"
    assert key not in text


def test_the_same_symbol_is_not_asked_again_within_the_min_interval(stub):
    app, url = stub
    s = settings(ASTER_AI_MIN_INTERVAL_SECONDS=0.3)

    async def go():
        adv = advisor(url, s)
        await settle(adv, ["c1"], [payload(1)])
        p2 = {**payload(1), "rsi": 61.0}  # the next candle: a new question about the same symbol
        early = adv.verdict("c2", "SYM1USDT", p2)
        asked_early = len(app.state.requests)
        later = (await settle(adv, ["c2"], [p2]))["c2"]
        await adv.close()
        return early, asked_early, later
    early, asked_early, later = asyncio.run(go())
    assert early is None and asked_early == 1  # waited instead of asking again at once
    assert later.source == "ai" and len(app.state.requests) == 2


def test_your_own_prices_make_a_local_model_free_and_bad_ones_are_refused(stub):
    from mraster.ai.advisor import advisor_from_settings

    app, url = stub
    with pytest.raises(st.SettingsErrors) as e:
        settings(ASTER_AI_PRICES="gpt-4.1=3/nine")
    assert "ASTER_AI_PRICES" in str(e.value) and "USD per million tokens" in str(e.value)
    s = settings(ASTER_AI_BASE_URL=url, ASTER_AI_MODEL="local-llama",
                 ASTER_AI_PRICES="local-llama=0/0, gpt-4.1=3/9", ASTER_AI_DAILY_BUDGET_USD=0.0001)
    assert s["ASTER_AI_PRICES"] == "local-llama=0/0,gpt-4.1=3/9"

    async def go():
        adv = advisor_from_settings(s, {}, lambda *a, **k: None)
        plans = await settle(adv, ["a", "b"], [payload(1), payload(2)])
        await adv.close()
        return plans, adv.budget.snapshot()
    plans, snap = asyncio.run(go())
    assert all(p.source == "ai" for p in plans.values())  # a tiny limit, but these calls cost nothing
    assert snap["calls"] == 2 and snap["spent"] == 0
    assert B.price("some-new-model") == B.DEFAULT_PRICE  # unknown: the conservative default
