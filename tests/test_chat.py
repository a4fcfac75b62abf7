"""The copilot chat over real HTTP: rule-based answers without a key, LLM answers through the real
openai client against the OpenAI-compatible test server (127.0.0.1), paid from the shared budget;
proposals that trade only after the user confirms — through the bot's inbox and risk gate."""
from __future__ import annotations

import asyncio
import json

import pytest

from conftest import API_KEY, bot_settings
from dashboard_helpers import Dashboard, dashboard_environ
from mraster.sim.serve import ThreadedServer
from mraster.store import JsonDocument
from mraster.words import words
from openai_stub import create_stub

KEY = "sk-chat-NEVER-SHOWN-0123456789abcdef"
STATE = {
    "mode": "paper",
    "market": {"XRPUSDT": {"change_pct": 1.0}, "ETHUSDT": {"change_pct": -2.0}},
    "positions": {"t1": {"symbol": "ETHUSDT", "side": "SELL", "qty": 0.5, "entry": 3000.0,
                         "stop": 3050.0, "take_profit": 2900.0, "r_now": 0.4, "opened_at": 1,
                         "initial_stop": 3050.0, "status": "open"}},
    "decisions": {"XRPUSDT": {"action": "SKIP", "reason": "no_signal", "why": "RSI and trend give no entry"}},
}


def seeded(tmp_path, **env) -> Dashboard:
    JsonDocument(tmp_path / "aster_state.json").write(json.loads(json.dumps(STATE)))
    return Dashboard(tmp_path, dashboard_environ(tmp_path, **env))


def test_without_a_key_chat_answers_from_the_bots_context_and_says_so(tmp_path):
    with seeded(tmp_path) as d:
        r = d.post("/api/ai/chat", {"message": "Which positions are open?"}).json()
        assert r["source"] == "rules" and "ASTER_CHAT_OPENAI_API_KEY" in r["note"]
        assert "short 0.5 ETHUSDT from 3000 (stop 3050, take-profit 2900" in r["reply"] and r["proposal"] is None
        why = d.post("/api/ai/chat", {"message": "why not xrp?"}).json()["reply"]
        assert "XRPUSDT: SKIP" in why and "RSI and trend" in why
        bad = d.post("/api/ai/chat", {"message": ""})
        assert bad.status_code == 422 and "message" in bad.text
        unknown = d.post("/api/ai/chat", {"message": "long DOGEUSDT"}).json()
        assert unknown["proposal"] is None  # only symbols the bot trades
        log = d.get("/api/state").json()["chat"]["log"]
        assert [m["role"] for m in log] == ["user", "assistant"] * 3


def test_a_german_question_gets_a_german_answer_from_the_rules(tmp_path):
    """The page sends its language: the rules understand German words and answer from the
    German catalogue, numbers with a decimal comma."""
    with seeded(tmp_path) as d:
        r = d.post("/api/ai/chat", {"message": "Welche Positionen sind offen?", "lang": "de"}).json()
        assert r["reply"] == "Short 0,5 ETHUSDT ab 3000 (Stop 3050, Take-Profit 2900, jetzt 0,4 R)"
        why = d.post("/api/ai/chat", {"message": "warum nicht xrp?", "lang": "de"}).json()["reply"]
        assert why == "XRPUSDT: AUSLASSEN — RSI und Trend ergeben keinen Einstieg."
        p = d.post("/api/ai/chat", {"message": "kaufe XRPUSDT", "lang": "de"}).json()
        assert p["proposal"]["side"] == "BUY" and p["reply"].startswith("Vorschlag: Long XRPUSDT")
        status = d.post("/api/ai/chat", {"message": "wie läuft es", "lang": "de"}).json()["reply"]
        assert status.startswith("Modus Papier; 1 offene Position(en)") and "Frag mich" in status
        assert d.post("/api/ai/chat", {"message": "x", "lang": "../etc"}).status_code == 422


def test_asking_to_close_never_proposes_a_trade(tmp_path):
    """"Close my short ETHUSDT" proposed opening a short (the side word matched first), and
    "schließe ETHUSDT" answered with the last decision; the chat says where closing is done."""
    with seeded(tmp_path) as d:
        for lang, message, start in (
                ("en", "close my short ETHUSDT", "The chat only proposes new trades; to close ETHUSDT"),
                ("de", "schließe den Short ETHUSDT", "Der Chat schlägt nur neue Trades vor; um ETHUSDT"),
                ("de", "alles glattstellen", "Der Chat schlägt nur neue Trades vor; um eine Position"),
                ("en", "exit long", "The chat only proposes new trades; to close a position")):
            r = d.post("/api/ai/chat", {"message": message, "lang": lang}).json()
            assert r["proposal"] is None and r["reply"].startswith(start), (message, r["reply"])


def test_a_proposal_trades_nothing_until_confirmed_and_is_sent_once(tmp_path):
    with seeded(tmp_path) as d:
        p = d.post("/api/ai/chat", {"message": "go long XRPUSDT"}).json()["proposal"]
        assert p["symbol"] == "XRPUSDT" and p["side"] == "BUY" and p["status"] == "proposed"
        assert "commands" not in d.state_file()  # a proposal is only shown
        wrong = d.post(f"/api/ai/proposals/{p['id']}/confirm", {"confirm": "yes"})
        assert wrong.status_code == 422 and "type the symbol (XRPUSDT)" in wrong.text
        ok = d.post(f"/api/ai/proposals/{p['id']}/confirm", {"confirm": "XRPUSDT"})
        assert ok.status_code == 200
        again = d.post(f"/api/ai/proposals/{p['id']}/confirm", {"confirm": "XRPUSDT"})
        assert again.status_code == 409 and "already sent" in again.text
        inbox = d.state_file()["commands"]["inbox"]
        assert [(c["kind"], c["symbol"], c["side"]) for c in inbox] == [("enter", "XRPUSDT", "BUY")]
        assert d.post("/api/ai/proposals/nope/confirm", {"confirm": "X"}).status_code == 404


@pytest.fixture
def stub():
    app = create_stub()
    with ThreadedServer(app) as srv:
        yield app, f"{srv.url}/v1"


def test_llm_chat_is_paid_from_the_shared_budget_and_never_shows_the_key(tmp_path, stub):
    app, url = stub
    app.state.by_topic = {"MrAster's copilot": {"kind": "ok", "plan": {
        "reply": "ETHUSDT short is 0.4 R up; XRPUSDT has no signal. A small short on XRPUSDT fits.",
        "proposal": {"symbol": "XRPUSDT", "side": "SELL", "reason": "weak breadth"}}}}
    with seeded(tmp_path, ASTER_AI_BASE_URL=url, ASTER_CHAT_OPENAI_API_KEY=KEY) as d:
        r = d.post("/api/ai/chat", {"message": "any idea?"})
        body = r.json()
        assert body["source"] == "ai" and body["proposal"]["side"] == "SELL"
        sent = json.loads(app.state.requests[0]["messages"][1]["content"])
        assert sent["context"]["positions"][0]["symbol"] == "ETHUSDT"  # answers with the bot's context
        ledger = d.state_file()["ai_budget"]
        assert ledger["kinds"]["chat"]["calls"] == 1 and ledger["spent"] > 0
        assert ledger["reservations"] == {}
        page = d.get("/api/state").text
        assert KEY not in r.text and KEY not in page and KEY not in (tmp_path / "aster_state.json").read_text()
        assert body["budget"]["spent"] == pytest.approx(ledger["spent"])


def test_chat_does_not_call_the_llm_when_the_budget_is_used_up(tmp_path, stub):
    app, url = stub
    with seeded(tmp_path, ASTER_AI_BASE_URL=url, ASTER_AI_DAILY_BUDGET_USD="0.0001") as d:
        r = d.post("/api/ai/chat", {"message": "budget?"}).json()
        assert r["source"] == "rules" and "budget is used up" in r["note"]
        assert "AI spending today" in r["reply"] and app.state.requests == []


def test_a_confirmed_proposal_is_opened_by_the_bot_with_its_brackets(sim_factory, tmp_path):
    from mraster.engine.runner import run_async

    sim, url, _ = sim_factory(n=8, seed=11)
    first = bot_settings(tmp_path, url, ASTER_MAX_OPEN_GLOBAL=2, ASTER_MAX_OPEN_PER_SYMBOL=1)
    assert asyncio.run(run_async(first)) == 0  # a first cycle: the bot's market is known
    s = bot_settings(tmp_path, url, ASTER_MAX_OPEN_GLOBAL=50, ASTER_MAX_OPEN_PER_SYMBOL=1)
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        held = {p["symbol"] for p in d.state_file()["positions"].values()}
        labels = d.state_file()["sentinel"]  # the sentinel runs in every mode: skip a shocked one
        free = sorted(x for x in set(d.state_file()["market"]) - held
                      if labels[x]["label"] != "red")[0]
        taken = sorted(held)[0]
        p1 = d.post("/api/ai/chat", {"message": f"short {free}"}).json()["proposal"]
        p2 = d.post("/api/ai/chat", {"message": f"long {taken}"}).json()["proposal"]
        for p in (p1, p2):
            assert d.post(f"/api/ai/proposals/{p['id']}/confirm", {"confirm": p["symbol"]}).status_code == 200
        assert asyncio.run(run_async(s)) == 0  # the bot acts on its inbox
        props = {p["symbol"]: p for p in d.get("/api/state").json()["chat"]["proposals"]}
    ok, refused = props[free]["ack"], props[taken]["ack"]
    assert ok["ok"] and ok["message"].startswith("opened short") and "stop" in ok["message"]
    # the answer is kept as words too: a German page says it in German
    from mraster.words import speaker
    german = speaker("de")(ok["words"]["template"], **ok["words"]["params"])
    assert german.startswith("eröffnet: Short ") and ", Stop " in german, german
    assert not refused["ok"] and "already holding this symbol" in refused["message"]
    state = json.loads((tmp_path / "aster_state.json").read_text())
    pos = [p for p in state["positions"].values() if p["symbol"] == free]
    assert len(pos) == 1 and pos[0]["origin"] == "chat" and pos[0]["side"] == "SELL"
    orders = [o for o in sim.accounts[API_KEY].orders.values() if o.symbol == free]
    assert {o.type for o in orders} >= {"STOP_MARKET", "TAKE_PROFIT_MARKET"}  # never without a stop


def test_a_confirmed_trade_is_marked_on_disk_before_its_order_can_leave(sim_factory, tmp_path):
    """A crash between sending the order and saving the answer must not send it again on restart:
    the command is acknowledged as interrupted on disk first."""
    from mraster.engine.runner import INTERRUPTED, handle_commands

    path = tmp_path / "aster_state.json"
    seen = []

    class Recorder:  # stands in for the engine: records what is on disk when the order would leave
        def save(self):
            JsonDocument(path).write(state)

        async def manual_entry(self, symbol, side):
            seen.append(json.loads(path.read_text())["command_acks"])
            return True, words("opened")

    state: dict = {}
    commands = {"inbox": [{"id": "c1", "kind": "enter", "symbol": "XRPUSDT", "side": "BUY"}]}
    asyncio.run(handle_commands(Recorder(), commands, state, lambda *a, **k: None))
    assert seen == [{"c1": {"ok": False, "partly": False, "message": str(INTERRUPTED),
                            "words": INTERRUPTED.to_dict(), "time": seen[0]["c1"]["time"]}}]
    assert state["command_acks"]["c1"]["message"] == "opened"
    asyncio.run(handle_commands(Recorder(), commands, state, lambda *a, **k: None))
    assert len(seen) == 1  # acknowledged: never run twice
