"""Every dashboard route over real HTTP: good input, bad input, and calls that must be refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from conftest import API_KEY, API_SECRET, ROOT
from dashboard_helpers import Dashboard, dashboard_environ, read_stream
from mraster.dashboard.security import SESSION_COOKIE

SECRET_KEY = "sk-live-THIS-MUST-NEVER-LEAK-1234567890abcd"


@pytest.fixture
def dash(tmp_path):
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        yield d


def test_page_health_and_openapi(dash):
    assert dash.get("/api/health").json()["ok"] is True
    page = dash.get("/")
    assert page.status_code == 200 and "MrAster" in page.text
    assert "content-security-policy" in page.headers and page.headers["x-frame-options"] == "DENY"
    paths = dash.get("/openapi.json").json()["paths"]
    for route in ("/api/health", "/api/bot/status", "/api/bot/start", "/api/bot/stop",
                  "/api/bot/restart", "/api/config", "/api/state", "/api/stream"):
        assert route in paths


def test_secrets_are_masked_everywhere_and_replaced_only_through_the_keys_form(dash, tmp_path):
    r = dash.put("/api/config/secrets", {"values": {"ASTER_OPENAI_API_KEY": SECRET_KEY}})
    assert r.status_code == 200, r.text
    for path in ("/api/config", "/api/state", "/api/bot/status", "/", "/api/presets"):
        body = dash.get(path).text
        assert SECRET_KEY not in body and SECRET_KEY[-20:] not in body, path
    item = next(s for s in dash.get("/api/config").json()["settings"]
                if s["key"] == "ASTER_OPENAI_API_KEY")
    assert item["is_set"] is True and item["value"] == "••••abcd"
    # the general editor refuses secrets; the error does not echo the value
    r = dash.put("/api/config", {"values": {"ASTER_OPENAI_API_KEY": "sk-other-value-123456"}})
    assert r.status_code == 422 and "sk-other" not in r.text
    assert r.json()["errors"][0]["field"] == "ASTER_OPENAI_API_KEY"
    # the saved file is readable only by its owner
    assert (tmp_path / "dashboard_config.json").stat().st_mode & 0o077 == 0
    assert dash.put("/api/config/secrets", {"values": {"ASTER_OPENAI_API_KEY": None}}).status_code == 200
    item = next(s for s in dash.get("/api/config").json()["settings"]
                if s["key"] == "ASTER_OPENAI_API_KEY")
    assert item["is_set"] is False


def test_bad_settings_get_422_naming_every_field_and_nothing_is_saved(dash, tmp_path):
    assert dash.put("/api/config", {"values": {"ASTER_LEVERAGE": 5}}).status_code == 200
    before = (tmp_path / "dashboard_config.json").read_text()
    r = dash.put("/api/config", {"values": {"ASTER_LEVERAGE": 500, "ASTER_RISK_PER_TRADE": "abc",
                                            "ASTER_NOT_A_SETTING": 1, "ASTER_INTERVAL": "7m"}})
    assert r.status_code == 422
    errors = {e["field"]: e for e in r.json()["errors"]}
    assert set(errors) == {"ASTER_LEVERAGE", "ASTER_RISK_PER_TRADE", "ASTER_NOT_A_SETTING",
                           "ASTER_INTERVAL"}
    assert "[1, 125]" in errors["ASTER_LEVERAGE"]["allowed"]
    # what was just typed is not "from dashboard_config.json" (it was never saved)
    assert not [e for e in errors.values() if "dashboard_config.json" in e["allowed"] + e["message"]]
    assert (tmp_path / "dashboard_config.json").read_text() == before
    # cross-field rule
    r = dash.put("/api/config", {"values": {"ASTER_RSI_BUY_MIN": 40, "ASTER_RSI_SELL_MAX": 60}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ASTER_RSI_SELL_MAX"


def test_every_place_that_takes_a_symbol_refuses_a_bad_one_naming_the_field_and_the_form(dash):
    """A symbol typed into the editor, the backtest or download form, or the chart's choice is
    refused with the field's name and the same allowed form (2-30 characters A-Z and 0-9)."""
    form = "2-30 characters A-Z and 0-9"
    answers = {
        "ASTER_SYMBOLS": dash.put("/api/config", {"values": {"ASTER_SYMBOLS": "ETHBTC,ETH/BTC"}}),
        "symbols (backtest)": dash.post("/api/backtest", {"symbols": ["ETH/BTC"]}),
        "symbols (download)": dash.post("/api/data/download", {"symbols": ["X"]}),
        "chart_symbol": dash.put("/api/ui", {"chart_symbol": "A" * 31}),
    }
    for field, r in answers.items():
        assert r.status_code == 422, field
        assert field.split()[0] in r.text and form in r.text, (field, r.text)
    assert "'ETH/BTC' is not allowed" in answers["symbols (backtest)"].text
    cfg = {s["key"]: s for s in dash.get("/api/config").json()["settings"]}
    assert cfg["ASTER_SYMBOLS"]["value"] == []  # nothing saved


def test_a_refused_value_is_not_sent_back_whole_nor_a_secret_at_all(dash):
    """A body its schema refuses is answered with the field and the rule, without the value: a
    token or key typed wrong stays out of the answer, and a megabyte pasted into a field is not
    sent back (nor quoted whole by the symbol check)."""
    token = "tok-" + SECRET_KEY + "x" * 500  # longer than a login token may be
    r = dash.post("/api/login", {"token": token})
    assert r.status_code == 422 and "token" in r.text and "500" in r.text, r.text
    assert SECRET_KEY not in r.text
    r = dash.put("/api/config/secrets", {"values": {"ASTER_OPENAI_API_KEY": [SECRET_KEY]}})
    assert r.status_code == 422 and "ASTER_OPENAI_API_KEY" in r.text and SECRET_KEY not in r.text
    huge = "A" * 200_000
    for r, field in ((dash.put("/api/ui", {"chart_symbol": huge}), "chart_symbol"),
                     (dash.post("/api/backtest", {"symbols": [huge]}), "symbols")):
        assert r.status_code == 422 and field in r.text and "2-30 characters" in r.text, r.text
        assert len(r.text) < 1000, len(r.text)
    # a list is bounded by count too: no more symbols than the bot's universe may hold
    r = dash.post("/api/backtest", {"symbols": ["ETHBTC"] * 1001})
    assert r.status_code == 422 and "symbols" in r.text and "1000" in r.text, r.text
    assert dash.get("/api/backtest").json()["state"] == "idle"  # nothing started
    # an unknown id or name in the address is quoted cut, not whole (a URL may be 16 KB)
    long_id = "x" * 5000
    for r in (dash.post(f"/api/ai/proposals/{long_id}/confirm", {"confirm": "BTCUSDT"}),
              dash.post(f"/api/alerts/{long_id}/dismiss"), dash.post(f"/api/presets/{long_id}"),
              dash.delete(f"/api/saved-presets/{long_id}")):
        assert r.status_code == 404 and "xxx" in r.text and len(r.text) < 300, r.text[:200]
    r = dash.post("/api/backtest", {"preset": huge})
    assert r.status_code == 422 and "preset" in r.text and len(r.text) < 300, r.text[:200]
    # a typed confirmation is a word, not a megabyte
    r = dash.post("/api/positions/BTCUSDT/close", {"confirm": huge})
    assert r.status_code == 422 and "confirm" in r.text and "100" in r.text, r.text


def test_saving_settings_and_resetting_one_to_its_default(dash):
    r = dash.put("/api/config", {"values": {"ASTER_LEVERAGE": 7, "ASTER_SYMBOLS": "btcusdt,ETHUSDT"}})
    assert r.status_code == 200
    assert set(r.json()["changed"]) == {"ASTER_LEVERAGE", "ASTER_SYMBOLS"}
    assert r.json()["restart_needed"] is False  # no bot running
    cfg = {s["key"]: s for s in dash.get("/api/config").json()["settings"]}
    assert cfg["ASTER_LEVERAGE"]["value"] == 7 and cfg["ASTER_LEVERAGE"]["source"] == "dashboard_config.json"
    assert cfg["ASTER_SYMBOLS"]["value"] == ["BTCUSDT", "ETHUSDT"]
    dash.put("/api/config", {"values": {"ASTER_LEVERAGE": None}})
    cfg = {s["key"]: s for s in dash.get("/api/config").json()["settings"]}
    assert cfg["ASTER_LEVERAGE"]["source"].startswith("preset")


def test_preset_preview_shows_exactly_what_apply_changes(dash, tmp_path):
    dash.put("/api/config", {"values": {"ASTER_LEVERAGE": 7}})
    (tmp_path / ".env").write_text("ASTER_RISK_PER_TRADE=0.002\n")
    presets = {p["name"]: p for p in dash.get("/api/presets").json()["presets"]}
    low = presets["low"]
    changes = {c["key"]: (c["from"], c["to"]) for c in low["changes"]}
    assert changes["ASTER_LEVERAGE"] == (7, 4)  # the user's own value gives way to the preset
    assert changes["ASTER_PRESET_MODE"] == ("mid", "low")
    assert "ASTER_RISK_PER_TRADE" not in changes  # .env wins, and the preview says so
    assert low["kept_by_override"] == [{"key": "ASTER_RISK_PER_TRADE", "value": 0.002, "source": ".env"}]
    assert presets["att"]["ignores_ai_budget"] is True
    r = dash.post("/api/presets/low")
    assert r.status_code == 200
    cfg = {s["key"]: s["value"] for s in dash.get("/api/config").json()["settings"]}
    for key, (_, new) in changes.items():
        assert cfg[key] == new
    assert dash.post("/api/presets/yolo").status_code == 404


def test_cross_site_and_rebinding_requests_are_refused(dash):
    assert dash.client.post("/api/bot/start").status_code == 403  # no CSRF header
    r = dash.post("/api/bot/pause", {"paused": True}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = dash.get("/api/state", headers={"Host": "evil.example:8000"})
    assert r.status_code == 403
    # the refusal quotes a long Host or Origin cut, not whole
    r = dash.get("/api/state", headers={"Host": "evil" + "e" * 5000 + ".example"})
    assert r.status_code == 403 and "evilee" in r.text and len(r.text) < 400, r.text[:100]
    r = dash.post("/api/bot/pause", {"paused": True},
                  headers={"Origin": "https://evil" + "e" * 5000 + ".example"})
    assert r.status_code == 403 and "evilee" in r.text and len(r.text) < 400, r.text[:100]
    r = dash.get("/api/state", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = dash.client.options("/api/bot/start", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    assert dash.post("/api/bot/pause", {"paused": True},
                     headers={"Origin": dash.url}).status_code == 200


def test_with_a_token_every_route_and_the_stream_need_it(tmp_path):
    env = dashboard_environ(tmp_path, ASTER_DASHBOARD_TOKEN="correct-horse-battery-staple")
    with Dashboard(tmp_path, env) as d:
        assert d.get("/api/health").status_code == 200
        assert d.get("/").status_code == 200  # the login form
        for path in ("/api/state", "/api/config", "/api/bot/status", "/api/stream", "/openapi.json"):
            assert d.get(path).status_code == 401, path
        assert d.post("/api/bot/start").status_code == 401
        bearer = {"Authorization": "Bearer correct-horse-battery-staple"}
        assert d.get("/api/state", headers=bearer).status_code == 200
        assert d.post("/api/login", {"token": "wrong"}).status_code == 401
        r = d.post("/api/login", {"token": "correct-horse-battery-staple"})
        assert r.status_code == 200
        cookie = r.cookies[SESSION_COOKIE]
        assert "correct-horse" not in cookie
        assert "samesite=strict" in r.headers["set-cookie"].lower()
        assert "httponly" in r.headers["set-cookie"].lower()
        assert d.get("/api/config").status_code == 200  # the client keeps the cookie
        token_field = next(s for s in d.get("/api/config").json()["settings"]
                           if s["key"] == "ASTER_DASHBOARD_TOKEN")
        assert "correct-horse" not in json.dumps(token_field)
        with httpx.stream("GET", f"{d.url}/api/stream", timeout=10,
                          headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}) as r:
            assert r.status_code == 200 and next(r.iter_lines()) == "retry: 2000"


def test_actions_need_typed_confirmation_and_go_to_the_inbox(dash):
    assert dash.post("/api/positions/BTCUSDT/close", {"confirm": "yes"}).status_code == 422
    assert dash.post("/api/positions/btc;rm/close", {"confirm": "btc;rm"}).status_code in (404, 422)
    r = dash.post("/api/positions/BTCUSDT/close", {"confirm": "BTCUSDT"})
    assert r.status_code == 200 and "not running" in r.json()["note"]
    assert dash.post("/api/positions/flatten", {"confirm": "flatten"}).status_code == 422
    assert dash.post("/api/positions/flatten", {"confirm": "FLATTEN"}).status_code == 200
    state = dash.state_file()
    assert [c["kind"] for c in state["commands"]["inbox"]] == ["close", "flatten"]
    assert state["commands"]["paused"] is True  # flattening also stops new entries
    view = dash.get("/api/state").json()["commands"]
    assert view["paused"] is True and len(view["pending"]) == 2
    assert dash.post("/api/bot/pause", {"paused": "maybe"}).status_code == 422
    assert dash.post("/api/bot/pause", {"paused": False}).json()["paused"] is False


def test_notices_stay_until_dismissed(dash, tmp_path):
    (tmp_path / "aster_state.json").write_text(json.dumps({"alerts": [
        {"time": 1, "level": "error", "message": "BTCUSDT: stop could not be placed", "symbol": "BTCUSDT"}]}))
    alerts = dash.get("/api/state").json()["alerts"]
    assert [a["message"] for a in alerts] == ["BTCUSDT: stop could not be placed"]
    assert dash.get("/api/state").json()["alerts"] == alerts  # still there on the next read
    assert dash.post(f"/api/alerts/{alerts[0]['id']}/dismiss").status_code == 200
    assert dash.get("/api/state").json()["alerts"] == []
    assert dash.post("/api/alerts/nope/dismiss").status_code == 404


def test_an_unreadable_file_moved_aside_is_a_notice_until_dismissed(dash, tmp_path):
    """A torn or hand-broken state file is moved aside (never overwritten) and the page says so:
    which file, where it went, and that defaults are used."""
    (tmp_path / "aster_state.json").write_text('{"positions": {"t1": ')  # cut off mid-write
    alerts = dash.get("/api/state").json()["alerts"]
    moved = [p.name for p in tmp_path.glob("aster_state.json.corrupt-*")]
    assert len(moved) == 1 and len(alerts) == 1
    assert alerts[0]["level"] == "error" and "aster_state.json could not be read" in alerts[0]["message"]
    assert moved[0] in alerts[0]["message"]
    assert dash.post(f"/api/alerts/{alerts[0]['id']}/dismiss").status_code == 200
    assert dash.get("/api/state").json()["alerts"] == []
    assert (tmp_path / moved[0]).read_text() == '{"positions": {"t1": '  # the user's bytes kept


def test_state_view_computes_performance_and_the_chart(dash, tmp_path):
    t0 = 1_700_000_000_000
    state = {
        "mode": "paper", "market_source": "live",
        "history": [
            {"symbol": "XRPUSDT", "side": "BUY", "qty": 10, "entry": 1.0, "exit": 1.2, "pnl": 2.0,
             "r": 2.0, "fees": 0.01, "funding": 0, "opened_at": t0, "closed_at": t0 + 60_000,
             "reason": "take_profit", "initial_stop": 0.9, "stop": 0.9, "take_profit": 1.2},
            {"symbol": "XRPUSDT", "side": "SELL", "qty": 10, "entry": 1.0, "exit": 1.1, "pnl": -1.0,
             "r": -1.0, "fees": 0.01, "funding": 0, "opened_at": t0 + 120_000,
             "closed_at": t0 + 180_000, "reason": "stop", "initial_stop": 1.1, "stop": 1.1,
             "take_profit": 0.85, "ai": "Momentum fading; half size.", "origin": "bot"}],
        "copilots": {"reviews": [{"symbol": "XRPUSDT", "closed_at": t0 + 180_000,
                                  "lesson": "stopped out after 1 min"}]},
        "equity_curve": [[t0, 100.0], [t0 + 1, 110.0], [t0 + 2, 99.0], [t0 + 3, 105.0]],
        "charts": {"XRPUSDT": [[t0, 1, 1.1, 0.9, 1.05]]},
    }
    (tmp_path / "aster_state.json").write_text(json.dumps(state))
    perf = dash.get("/api/state").json()["performance"]
    assert perf["trades"] == 2 and perf["win_rate"] == 0.5 and perf["profit_factor"] == 2.0
    assert perf["expectancy_r"] == 0.5 and perf["max_drawdown"] == 11.0
    assert perf["max_drawdown_pct"] == pytest.approx(0.1)
    latest = dash.get("/api/state").json()["history"][0]  # newest first, with its trade notes
    assert latest["notes"] == ["Momentum fading; half size.", "lesson: stopped out after 1 min"]
    got = httpx.get(f"{dash.url}/api/chart/XRPUSDT")
    chart = got.json()
    assert len(chart["candles"]) == 1
    # asked again every refresh: unchanged until the next cycle, so answered without a body
    again = httpx.get(f"{dash.url}/api/chart/XRPUSDT", headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert [m["kind"] for m in chart["markers"]] == ["entry", "exit", "entry", "exit"]
    assert dash.get("/api/chart/bad symbol").status_code == 422
    assert dash.put("/api/ui", {"chart_symbol": "ETHUSDT"}).json() == {"chart_symbol": "ETHUSDT"}
    assert dash.put("/api/ui", {"chart_symbol": "../etc"}).status_code == 422
    bad = dash.put("/api/ui", {"chart_symbol": "ETHUSDT\n"})  # a whole symbol, nothing after it
    assert bad.status_code == 422 and "A-Z and 0-9" in bad.text
    assert dash.state_file()["history"] == state["history"]  # the ui write kept the bot's data


def test_first_run_wizard_modes_and_live_needs_keys_and_confirmation(dash, tmp_path):
    assert dash.get("/api/config").json()["first_run"] is True
    r = dash.post("/api/setup", {"mode": "offline"})
    assert r.status_code == 200 and r.json()["first_run"] is False
    cfg = json.loads((tmp_path / "dashboard_config.json").read_text())
    assert cfg["ASTER_PAPER"] is True and cfg["ASTER_OFFLINE"] is True
    r = dash.post("/api/setup", {"mode": "live", "confirm": "TRADE REAL MONEY"})
    assert r.status_code == 422 and "ASTER_API_KEY" in r.text
    dash.put("/api/config/secrets", {"values": {"ASTER_API_KEY": API_KEY, "ASTER_API_SECRET": API_SECRET}})
    assert dash.post("/api/setup", {"mode": "live", "confirm": "yes"}).status_code == 422
    assert dash.post("/api/setup", {"mode": "moon"}).status_code == 422
    r = dash.post("/api/setup", {"mode": "live", "confirm": "TRADE REAL MONEY"})
    assert r.status_code == 422 and "run the fire drill" in r.text  # locked until the drill
    r = dash.post("/api/setup", {"mode": "live", "confirm": "TRADE REAL MONEY",
                                 "override": "SKIP THE DRILL"})
    assert r.status_code == 200
    cfg = json.loads((tmp_path / "dashboard_config.json").read_text())
    assert cfg["ASTER_PAPER"] is False and cfg["ASTER_OFFLINE"] is False
    assert cfg["fire_drill"]["override"]["at"] > 0  # the override is recorded


def test_connection_test_explains_failures_in_plain_words(dash, sim_factory):
    _, url, _ = sim_factory(n=2)
    dash.put("/api/config", {"values": {"ASTER_EXCHANGE_BASE": url}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "ASTER_API_KEY and ASTER_API_SECRET not set" in r["message"]
    dash.put("/api/config/secrets", {"values": {"ASTER_API_KEY": API_KEY, "ASTER_API_SECRET": API_SECRET}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is True and float(r["balance"]) > 0
    dash.put("/api/config/secrets", {"values": {"ASTER_API_SECRET": "wrong-secret-0000000000"}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "secret does not belong" in r["message"]
    assert "wrong-secret" not in json.dumps(r)
    dash.put("/api/config/secrets", {"values": {"ASTER_API_KEY": "unknown-key-00000000000"}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "refused the API key" in r["message"]
    dash.put("/api/config", {"values": {"ASTER_EXCHANGE_BASE": "http://127.0.0.1:9"}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "cannot be reached" in r["message"]


def test_stream_replays_recent_lines_and_resumes_after_last_event_id(dash):
    hub = dash.ctx.hub
    for i in range(600):
        hub.publish({"event": "decision", "symbol": f"S{i}", "ts": i})
    events = read_stream(dash.url, lambda ev: len(ev) >= 500)
    assert len(events) == 500 and events[0]["symbol"] == "S100" and events[-1]["kind"] == "decisions"
    events = read_stream(dash.url, lambda ev: len(ev) >= 10, headers={"Last-Event-ID": "590"})
    assert [e["seq"] for e in events] == list(range(591, 601))


def test_non_loopback_bind_without_token_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    p = subprocess.run([sys.executable, str(ROOT / "dashboard_server.py"), "--host", "0.0.0.0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ASTER_DASHBOARD_TOKEN" in p.stdout


def test_a_bad_value_of_the_dashboards_own_settings_stops_its_start(tmp_path):
    """The dashboard starts with a bad saved value of the bot's (its page lists it); a bad
    value of its own — here the port in the saved configuration — or one in the environment
    stops it with the field and the allowed range named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    (tmp_path / "dashboard_config.json").write_text(json.dumps({"ASTER_DASHBOARD_PORT": 99999}))
    p = subprocess.run([sys.executable, str(ROOT / "dashboard_server.py")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "ASTER_DASHBOARD_PORT: 99999 is not allowed; expected an integer in" in p.stdout
    # a bad value in the environment (which the page cannot mend) stops it too, as before
    (tmp_path / "dashboard_config.json").unlink()
    p = subprocess.run([sys.executable, str(ROOT / "dashboard_server.py")], cwd=tmp_path,
                       env={**env, "ASTER_LEVERAGE": "500"}, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "ASTER_LEVERAGE: '500' is not allowed" in p.stdout, p.stdout


def test_connection_test_with_an_api_wallet(dash, sim_factory):
    from conftest import V3_KEY, V3_SIGNER, V3_USER

    _, url, _ = sim_factory(n=2)
    dash.put("/api/config", {"values": {"ASTER_EXCHANGE_BASE": url, "ASTER_USER_ADDRESS": V3_USER,
                                        "ASTER_SIGNER_ADDRESS": V3_SIGNER}})
    dash.put("/api/config/secrets", {"values": {"ASTER_SIGNER_PRIVATE_KEY": V3_KEY}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is True and r["scheme"] == "v3" and V3_SIGNER in r["message"]
    assert V3_KEY[2:] not in json.dumps(dash.get("/api/config").json())
    # a wallet that never approved this API wallet
    dash.put("/api/config", {"values": {"ASTER_USER_ADDRESS": "0x" + "ab" * 20}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "not approved" in r["message"]
    # a key of another API wallet than the configured signer is not even saved ...
    r = dash.put("/api/config/secrets", {"values": {"ASTER_SIGNER_PRIVATE_KEY": "0x" + "11" * 32}})
    assert r.status_code == 422 and "ASTER_SIGNER_PRIVATE_KEY" in r.text
    # ... and a signer address changed afterwards is caught before any request
    dash.put("/api/config", {"values": {"ASTER_SIGNER_ADDRESS": "0x" + "1" * 40}})
    r = dash.post("/api/setup/test-connection").json()
    assert r["ok"] is False and "belongs to API wallet" in r["message"]
    assert dash.put("/api/config", {"values": {"ASTER_USER_ADDRESS": "0x123"}}).status_code == 422


def test_backtest_from_the_dashboard_with_a_preset(dash):
    from dashboard_helpers import wait_for

    assert dash.post("/api/backtest", {"preset": "yolo"}).status_code == 422
    assert dash.post("/api/backtest", {"symbols": ["ETH/BTC"]}).status_code == 422
    r = dash.post("/api/backtest", {"preset": "low", "symbols": ["ETHBTC"], "days": 2})
    assert r.status_code == 200 and r.json()["state"] == "running"
    assert dash.post("/api/backtest", {"days": 2}).status_code == 409  # one at a time
    job = wait_for(lambda: (j := dash.get("/api/backtest").json())["state"] != "running" and j,
                   what="the backtest")
    assert job["state"] == "done", job.get("error")
    rep = job["report"]
    assert rep["symbols"] == ["ETHBTC"] and rep["settings"]["ASTER_LEVERAGE"] == 4
    assert 2 * 288 <= rep["candles_per_symbol"] <= 2 * 288 + 1 and rep["equity_curve"]
    # the run's journal: History's "last backtest" shows its trades with the same views
    page = dash.get("/api/journal/trades", params={"source": "backtest"}).json()
    assert page["total"] == rep["summary"]["trades"] and page["source"] == "backtest"
    r = dash.post("/api/backtest", {"symbols": ["DOGEBTC"]})
    job = wait_for(lambda: (j := dash.get("/api/backtest").json())["state"] != "running" and j,
                   what="the failing backtest")
    assert job["state"] == "error" and "DOGEBTC" in job["error"]


def test_without_a_token_other_machines_are_refused_even_with_a_forged_host():
    """The middleware called as ASGI with a peer address from the network (a second machine
    cannot be simulated on this one's loopback)."""
    import asyncio as aio

    from mraster.dashboard.security import SecurityMiddleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def call(client: str, token: str) -> int:
        sent = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request", "body": b""}
        scope = {"type": "http", "path": "/api/state", "method": "GET", "client": (client, 5555),
                 "headers": [(b"host", b"127.0.0.1:8000"),
                             (b"authorization", f"Bearer {token}".encode())]}
        from mraster.dashboard.sessions import LoginThrottle, SessionStore
        mw = SecurityMiddleware(app, lambda: token, sessions=SessionStore, throttle=LoginThrottle)
        aio.run(mw(scope, receive, send))
        return sent[0]["status"]
    assert call("192.168.1.20", "") == 403
    assert call("127.0.0.1", "") == 200
    assert call("192.168.1.20", "a-long-dashboard-token") == 200


def test_a_malformed_or_foreign_wallet_key_is_refused_before_it_is_saved(dash, tmp_path):
    from conftest import V3_KEY, V3_SIGNER

    before = (tmp_path / "dashboard_config.json").read_text() if (
        tmp_path / "dashboard_config.json").exists() else None
    r = dash.put("/api/config/secrets", {"values": {"ASTER_SIGNER_PRIVATE_KEY": "0x1234"}})
    assert r.status_code == 422
    assert "ASTER_SIGNER_PRIVATE_KEY" in r.text and "64 hex digits" in r.text
    assert "0x1234" not in r.text  # a secret is never echoed, not even a wrong one
    after = (tmp_path / "dashboard_config.json").read_text() if (
        tmp_path / "dashboard_config.json").exists() else None
    assert after == before
    # the configured API wallet and a key of another wallet
    assert dash.put("/api/config", {"values": {"ASTER_SIGNER_ADDRESS":
                                               "0x" + "1" * 40}}).status_code == 200
    r = dash.put("/api/config/secrets", {"values": {"ASTER_SIGNER_PRIVATE_KEY": V3_KEY}})
    assert r.status_code == 422 and V3_SIGNER.lower() in r.text.lower()
    assert dash.put("/api/config", {"values": {"ASTER_SIGNER_ADDRESS": V3_SIGNER}}).status_code == 200
    assert dash.put("/api/config/secrets", {"values": {"ASTER_SIGNER_PRIVATE_KEY":
                                                       V3_KEY}}).status_code == 200


def test_answers_are_compressed_and_the_pages_files_cached_but_the_live_log_streams(dash):
    """An idle page polls the state every 2 s: it travels compressed. The page's own files carry
    the version in their address and are kept by the browser; the event stream is not buffered."""
    raw = httpx.get(f"{dash.url}/api/state", headers={"Accept-Encoding": "identity"})
    packed = httpx.get(f"{dash.url}/api/state", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip" and "content-encoding" not in raw.headers
    assert int(packed.headers["content-length"]) * 2 < len(raw.content)
    assert packed.json().keys() == raw.json().keys()
    page = dash.get("/").text
    assert "/static/vendor/lightweight-charts/lightweight-charts.standalone.production.js?v=" in page
    kept = httpx.get(f"{dash.url}/static/app.js?v=1", headers={"Accept-Encoding": "gzip"})
    assert "immutable" in kept.headers["cache-control"] and kept.headers["content-encoding"] == "gzip"
    assert httpx.get(f"{dash.url}/static/app.js").headers["cache-control"] == "no-cache"
    with httpx.stream("GET", f"{dash.url}/api/stream", headers={"Accept-Encoding": "gzip"},
                      timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in r.headers
        assert next(r.iter_lines()) is not None  # the first event arrives unbuffered


def test_the_page_is_answered_while_the_bot_holds_the_state_files_lock(dash, tmp_path):
    """The bot locks the state file while it writes (fsync included); the dashboard's pages
    must not wait for that: every write replaces the file atomically, so the dashboard reads
    the whole new version without the lock (it waited up to the lock's 30 s before)."""
    from filelock import FileLock

    from mraster.store import JsonDocument

    doc = JsonDocument(tmp_path / "aster_state.json")
    doc.write({"mode": "paper", "telemetry": {"cycle": 1}})
    assert dash.get("/api/state").json()["telemetry"]["cycle"] == 1
    with FileLock(str(tmp_path / "aster_state.json.lock"), timeout=5):  # the bot, mid-write
        doc._save({"mode": "paper", "telemetry": {"cycle": 2}})
        got = httpx.get(f"{dash.url}/api/state", timeout=5).json()
    assert got["telemetry"]["cycle"] == 2


def test_an_unchanged_state_is_not_sent_again(dash, tmp_path):
    """A page polls every 2 s, the bot writes once a cycle (30 s by default): a poll holding the
    current version gets 304 without a body; a new cycle is sent in full."""
    from mraster.store import JsonDocument

    doc = JsonDocument(tmp_path / "aster_state.json")
    doc.write({"mode": "paper", "telemetry": {"cycle": 1}})
    first = httpx.get(f"{dash.url}/api/state", headers={"Accept-Encoding": "gzip"})
    tag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    again = httpx.get(f"{dash.url}/api/state", headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    doc.write({"mode": "paper", "telemetry": {"cycle": 2}})
    changed = httpx.get(f"{dash.url}/api/state", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["telemetry"]["cycle"] == 2
    assert changed.headers["etag"] != tag


def test_every_address_of_the_api_belongs_to_exactly_one_route(tmp_path):
    """The routers are matched hot-first (the state the pages poll), not in the order they were
    written: that is only safe while no address and method is answered by two routes, which a
    new route with a path parameter (``/api/{what}``) could silently break."""
    from starlette.routing import Match

    from mraster.dashboard.app import ROUTERS, create_app
    from mraster.dashboard.context import make_context

    app = create_app(make_context({}, cwd=tmp_path))
    routes = [r for m in ROUTERS for r in m.router.routes] + [
        r for r in app.routes if hasattr(r, "path")]  # the app's own: /, health, docs, static
    checked = 0
    for route in (r for m in ROUTERS for r in m.router.routes):
        address = route.path.replace("{", "").replace("}", "")  # /api/positions/symbol/close
        for method in route.methods:
            scope = {"type": "http", "path": address, "method": method, "root_path": ""}
            full = [r for r in routes if r.matches(dict(scope))[0] == Match.FULL]
            assert full == [route], f"{method} {address} is answered by {full}"
            checked += 1
    assert checked >= 40  # every route of every router
