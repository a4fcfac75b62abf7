"""Requests no one may use to crash or trick the dashboard: the real ``dashboard_server.py``
process over HTTP (a crash there must not take the test runner with it)."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT
from dashboard_helpers import CSRF, wait_for
from mraster.dashboard.limits import MAX_BODY, json_depth
from mraster.sim.serve import free_port


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "dashboard_server.py"), "--port",
                             str(port)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, timeout=60, what="the dashboard")
    yield proc, url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_deeply_nested_json_is_refused_and_the_dashboard_lives_on(server):
    proc, url = server
    for path in ("/api/login", "/api/config"):
        r = httpx.post(url + path, content=b"[" * 100_000, headers={
            **CSRF, "content-type": "application/json"}, timeout=30)
        assert r.status_code == 422 and "nested deeper" in r.json()["detail"]
    assert httpx.get(f"{url}/api/health").status_code == 200 and proc.poll() is None


def test_a_body_over_the_limit_is_refused(server):
    _, url = server
    r = httpx.post(url + "/api/login", content=b" " * (MAX_BODY + 1),
                   headers={**CSRF, "content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and str(MAX_BODY) in r.json()["detail"]


def test_origin_scheme_and_host_userinfo_are_checked(server):
    _, url = server
    port = url.rsplit(":", 1)[1]
    r = httpx.post(url + "/api/bot/pause", json={"paused": True},
                   headers={**CSRF, "origin": f"https://127.0.0.1:{port}"})
    assert r.status_code == 403 and "origin" in r.json()["detail"]
    r = httpx.get(url + "/api/state", headers={"host": f"evil@127.0.0.1:{port}"})
    assert r.status_code == 400


def test_json_depth_counts_only_structure():
    assert json_depth(b'{"a": [1, {"b": "[[[[" }]}') == 3
    assert json_depth(b'"\\"[["') == 0


def test_every_value_is_bounded_and_named_in_the_error(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        for key, value, words in (("ASTER_AI_MODEL", "m" * 5000, "at most 200 characters"),
                                  ("ASTER_SCAN_INTERVAL_SECONDS", 10 ** 400, "a number in"),
                                  ("ASTER_MAX_OPEN_GLOBAL", 10 ** 400, "an integer in")):
            r = d.put("/api/config", {"values": {key: value}})
            assert r.status_code == 422, r.text
            assert key in r.text and words in r.text
        assert not (tmp_path / "dashboard_config.json").exists()  # nothing half written


def test_file_settings_from_the_dashboard_stay_in_the_working_folder(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    home = tmp_path / "home"
    home.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("password=hunter2\n")
    with Dashboard(home, dashboard_environ(home)) as d:
        for key in ("ASTER_STATE_FILE", "ASTER_EVENTS_FILE", "ASTER_BRACKETS_QUEUE_FILE",
                    "ASTER_BACKTEST_DATA"):
            for value in (str(victim), "../victim.txt"):
                r = d.put("/api/config", {"values": {key: value}})
                assert r.status_code == 422 and key in r.text and "working folder" in r.text
        r = d.put("/api/config", {"values": {"ASTER_CONFIG_FILE": "other.json"}})
        assert r.status_code == 422 and "environment only" in r.text
        ok = d.put("/api/config", {"values": {"ASTER_EVENTS_FILE": "logs/events.jsonl"}})
        assert ok.status_code == 200
        assert d.put("/api/ui", {"chart_symbol": "BTCUSDT"}).status_code == 200
    assert victim.read_text() == "password=hunter2\n"


def test_keys_go_only_to_the_host_they_were_entered_for(tmp_path):
    """The exchange keys go only to Aster's hosts, this machine or a host from the environment:
    pointing ASTER_EXCHANGE_BASE elsewhere from the dashboard stops both the connection test
    and the bot before a signed request leaves. Changing the AI host forgets the AI key."""
    from dashboard_helpers import Dashboard, dashboard_environ

    env = dashboard_environ(tmp_path)
    with Dashboard(tmp_path, env) as d:
        assert d.put("/api/config/secrets", {"values": {
            "ASTER_API_KEY": "k" * 64, "ASTER_API_SECRET": "s" * 64,
            "ASTER_OPENAI_API_KEY": "sk-test-0123456789"}}).status_code == 200
        assert d.put("/api/config", {"values": {"ASTER_PAPER": False, "ASTER_EXCHANGE_BASE":
                                                "https://collector.example.net"}}).status_code == 200
        r = d.post("/api/setup/test-connection").json()
        assert r["ok"] is False and "not an Aster host" in r["message"]
        r = d.post("/api/bot/start")
        assert r.status_code == 422 and "ASTER_EXCHANGE_BASE" in r.text
        assert d.get("/api/bot/status").json()["running"] is False
        r = d.put("/api/config", {"values": {"ASTER_AI_BASE_URL": "https://llm.example.net/v1"}})
        assert r.status_code == 200
        items = {i["key"]: i for i in r.json()["config"]["settings"]}
        assert items["ASTER_OPENAI_API_KEY"]["is_set"] is False
        assert "sk-test" not in (tmp_path / "dashboard_config.json").read_text()


def test_wrong_tokens_lock_the_peer_out_and_sessions_end_at_logout(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ
    from mraster.dashboard.security import SESSION_COOKIE
    from mraster.dashboard.sessions import FREE_TRIES

    token = "correct-horse-battery-staple"
    with Dashboard(tmp_path, dashboard_environ(tmp_path, ASTER_DASHBOARD_TOKEN=token)) as d:
        first = d.post("/api/login", {"token": token})
        second = d.post("/api/login", {"token": token})
        assert first.cookies[SESSION_COOKIE] != second.cookies[SESSION_COOKIE]  # random, not a hash
        cookie = {SESSION_COOKIE: second.cookies[SESSION_COOKIE]}
        d.client.cookies.clear()
        assert httpx.get(d.url + "/api/state", cookies=cookie).status_code == 200
        d.client.cookies.set(SESSION_COOKIE, cookie[SESSION_COOKIE])
        assert d.post("/api/logout").status_code == 200
        assert httpx.get(d.url + "/api/state", cookies=cookie).status_code == 401  # ended
        for _ in range(FREE_TRIES - 1):
            assert d.post("/api/login", {"token": "guess"}).status_code == 401
        assert httpx.get(d.url + "/api/state", headers={"Authorization": "Bearer guess"}
                         ).status_code == 401  # header guesses count too
        r = d.post("/api/login", {"token": token})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # even the right one


def test_a_short_token_is_refused_off_loopback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    env["ASTER_DASHBOARD_TOKEN"] = "short-token"
    p = subprocess.run([sys.executable, str(ROOT / "dashboard_server.py"), "--host", "0.0.0.0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "at least 16 characters" in p.stdout


def test_a_world_readable_env_file_with_a_secret_is_a_notice(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    env_file = tmp_path / ".env"
    env_file.write_text("ASTER_OPENAI_API_KEY=sk-secret-value-123\n")
    env_file.chmod(0o644)
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        body = d.get("/api/state").text
        assert "ASTER_OPENAI_API_KEY" in body and "chmod 600" in body
        assert "sk-secret-value" not in body
        env_file.chmod(0o600)
        assert "chmod 600" not in d.get("/api/state").text


def test_pause_takes_a_real_boolean_and_symbols_follow_their_pattern(tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        assert d.post("/api/bot/pause", {"paused": 0}).status_code == 422
        assert d.post("/api/bot/pause", {"paused": True}).status_code == 200
        assert d.get("/api/chart/btc-usdt").status_code == 422
        spec = d.get("/openapi.json").json()
        params = spec["paths"]["/api/chart/{symbol}"]["get"]["parameters"]
        assert params[0]["schema"]["pattern"] == "^[A-Z0-9]{2,30}$"
