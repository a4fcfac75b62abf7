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
