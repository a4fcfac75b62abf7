"""Notifications to the phone and commands from it, against a local server that speaks
Telegram's Bot API and a local webhook receiver, over HTTP."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import bot_settings
from dashboard_helpers import wait_for
from mraster import settings as st
from mraster.engine.runner import run_async
from mraster.notifications import QUEUE_MAX, Notifier
from mraster.sim.serve import ThreadedServer
from mraster.store import JsonDocument
from telegram_stub import create_telegram_stub

TOKEN = "123456:TELEGRAM-TOKEN-NEVER-SHOWN"
CHAT = "4242"


def notify_env(url: str, **extra) -> dict[str, str]:
    return {"ASTER_TELEGRAM_BOT_TOKEN": TOKEN, "ASTER_TELEGRAM_CHAT_ID": CHAT,
            "ASTER_TELEGRAM_API_BASE": url, "ASTER_WEBHOOK_URL": f"{url}/hook",
            **{k: str(v) for k, v in extra.items()}}


def test_the_bots_entries_reach_telegram_and_the_webhook_and_the_token_stays_secret(
        sim_factory, tmp_path):
    app = create_telegram_stub()
    sim, url, _ = sim_factory(n=12, seed=11)
    with ThreadedServer(app) as tg:
        s = bot_settings(tmp_path, url, ASTER_NOTIFY_ALERTS="false", ASTER_NOTIFY_BRACKETS="false",
                         **notify_env(tg.url, ASTER_TELEGRAM_COMMANDS="false"))
        assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    opened = sorted(p["symbol"] for p in state["positions"].values())
    assert opened
    texts = [b["text"] for _, b in app.state.sent]
    assert sorted(t.split()[3] for t in texts if t.startswith("Opened")) == opened
    assert all(tok == TOKEN and b["chat_id"] == CHAT for tok, b in app.state.sent)
    assert not [t for t in texts if t.startswith("WARNING") or t.startswith("ERROR")]  # switched off
    hooks = [h["content"] for h in app.state.hooks]
    assert hooks == texts and all(h["text"] == h["content"] for h in app.state.hooks)
    for f in ("aster_state.json", "events.jsonl"):
        assert TOKEN not in (tmp_path / f).read_text() and "TELEGRAM-TOKEN" not in (tmp_path / f).read_text()


def make(tmp_path, url: str, **extra):
    s = st.load(environ=notify_env(url, **extra), env_file=Path("/none"))
    doc = JsonDocument(tmp_path / "aster_state.json")
    doc.write({"commands": {}})
    alerts: list[tuple[str, str]] = []
    state = {"positions": {}, "telemetry": {"equity": 10_000.0, "cycle": 7}, "mode": "paper",
             "history": []}
    return Notifier(s, state, doc, lambda level, msg: alerts.append((level, str(msg))), backoff_s=0.01), \
        doc, alerts


def test_failed_deliveries_are_retried_with_back_off_and_then_shown(tmp_path):
    app = create_telegram_stub()
    with ThreadedServer(app) as tg:
        async def go(fail: int):
            n, doc, alerts = make(tmp_path, tg.url, ASTER_TELEGRAM_COMMANDS="false")
            app.state.fail_next = fail
            n.start()
            n.push("exits", f"after {fail} failures")
            await n.close(grace_s=30)
            return alerts
        assert asyncio.run(go(2)) == []  # two 500s, then delivered: nothing to say
        assert app.state.sent[-1][1]["text"] == "after 2 failures"
        alerts = asyncio.run(go(50))
        assert alerts and alerts[0][0] == "error" and "telegram notifications fail" in alerts[0][1]
        assert TOKEN not in alerts[0][1]


def test_sending_never_waits_and_keeps_the_newest(tmp_path):
    n, _, _ = make(tmp_path, "http://127.0.0.1:9")  # nothing listens there; nothing is started
    for i in range(QUEUE_MAX + 50):
        n.push("entries", f"message {i}")
    assert n.queue.qsize() == QUEUE_MAX
    assert n.queue.get_nowait() == "message 50"  # the oldest made room
    n.s = st.load(environ=notify_env("http://127.0.0.1:9", ASTER_NOTIFY_ENTRIES="false"),
                  env_file=Path("/none"))
    before = n.queue.qsize()
    n.push("entries", "switched off")
    assert n.queue.qsize() == before


def test_commands_come_from_the_users_own_chat_only(tmp_path):
    app = create_telegram_stub()

    def update(i: int, chat: str, text: str) -> dict:
        return {"update_id": i, "message": {"chat": {"id": int(chat)}, "text": text}}
    app.state.updates = [update(1, "999", "/flatten"), update(2, "999", "/flatten CONFIRM"),
                         update(3, CHAT, "/status"), update(4, CHAT, "/pause")]
    with ThreadedServer(app) as tg:
        async def go():
            n, doc, _ = make(tmp_path, tg.url)
            n.start()
            replies = lambda: [b["text"] for _, b in app.state.sent]  # noqa: E731
            await asyncio.to_thread(wait_for, lambda: len(replies()) >= 2, 30, "two replies")
            assert doc.read()["commands"]["paused"] is True
            app.state.updates.append(update(5, CHAT, "/flatten"))
            await asyncio.to_thread(wait_for, lambda: len(replies()) >= 3, 30, "the confirmation ask")
            assert "inbox" not in doc.read()["commands"]  # nothing happens before the confirmation
            app.state.updates.append(update(6, CHAT, "/flatten CONFIRM"))
            await asyncio.to_thread(wait_for, lambda: len(replies()) >= 4, 30, "the flatten reply")
            await n.close()
            return replies(), doc.read()["commands"]
        texts, commands = asyncio.run(go())
    assert all(b["chat_id"] == CHAT for _, b in app.state.sent)  # nothing to the stranger
    assert texts[0].startswith("MrAster paper: equity 10000.00") and texts[1].startswith("Paused")
    assert "/flatten CONFIRM" in texts[2] and texts[3].startswith("Flatten sent")
    (cmd,) = commands["inbox"]
    assert cmd["kind"] == "flatten" and commands["paused"] is True


def test_a_token_telegram_refuses_is_said_not_polled_in_silence(tmp_path):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/bot{token}/getUpdates")
    async def refused(token: str):
        return JSONResponse({"ok": False, "description": "Unauthorized"}, 401)
    with ThreadedServer(app) as tg:
        async def go():
            n, _, alerts = make(tmp_path, tg.url)
            n.start()
            await asyncio.to_thread(wait_for, lambda: alerts, 30, "the notice")
            await n.close()
            return alerts
        alerts = asyncio.run(go())
    assert alerts[0][0] == "error" and "HTTP 401" in alerts[0][1] and TOKEN not in alerts[0][1]


def test_a_german_trader_gets_messages_and_replies_in_german(sim_factory, tmp_path):
    """``ASTER_NOTIFY_LANGUAGE=de``: the bot's entries, a breaker, a warning, the daily summary
    and the replies to commands reach the phone in German, amounts with a decimal comma."""
    from mraster.notifications import message_for
    from mraster.protections import DAY_MS, roll_ledger, trips
    from mraster.words import speaker, words

    app = create_telegram_stub()
    sim, url, _ = sim_factory(n=12, seed=11)
    (tmp_path / "bot").mkdir()
    with ThreadedServer(app) as tg:
        s = bot_settings(tmp_path / "bot", url, ASTER_NOTIFY_ALERTS="false",
                         ASTER_NOTIFY_BRACKETS="false", ASTER_NOTIFY_LANGUAGE="de",
                         **notify_env(tg.url, ASTER_TELEGRAM_COMMANDS="false"))
        assert asyncio.run(run_async(s)) == 0
    texts = [b["text"] for _, b in app.state.sent]
    assert texts and all(t.startswith(("Eröffnet: Long ", "Eröffnet: Short ")) for t in texts), texts
    de = speaker("de")
    now = 1_700_000_000_000 // DAY_MS * DAY_MS + 36_000_000
    ledger = roll_ledger(roll_ledger({}, 10_000.0, now), 9_650.0, now + 60_000)
    (trip,) = trips([], ledger, 9_650.0, now + 60_000, st.load(environ={}, env_file=Path("/n")))
    kind, text = message_for("breaker", {"name": trip.name, "message": trip.message,
                                         "words": trip.words}, de)
    assert kind == "breakers" and text.startswith("Schutzschalter daily_loss: Tagesverlust 350 USDT")
    w = words("{kind} notifications are delivered again", kind="telegram")
    assert message_for("alert", {"level": "warning", "message": str(w), "words": w.to_dict()},
                       de)[1].startswith("WARNUNG: ")
    assert message_for("close", {"side": "SELL", "symbol": "ETHUSDT", "reason": "take_profit",
                                 "pnl": 12.5, "r": 1.4}, de)[1] == \
        "Geschlossen: Short ETHUSDT (Take-Profit): PnL +12,50 USDT, +1,40 R"
    n, _, _ = make(tmp_path, "http://127.0.0.1:9", ASTER_NOTIFY_LANGUAGE="de")
    assert n.command("/status") == \
        "MrAster Papier: Kontowert 10000,00 USDT, 0 offene Position(en), handelt, Zyklus 7"
    assert n.command("/positions") == "Keine offenen Positionen."
    assert n.command("/help").startswith("Befehle: ")
    n.state["history"] = [{"closed_at": now, "pnl": -3.25}]
    n.daily(now)
    n.daily(now + DAY_MS)
    assert n.queue.get_nowait() == \
        "Tagesbilanz: 1 Trade(s), PnL -3,25 USDT, 0 offene Position(en), Kontowert 10000,00 USDT"
