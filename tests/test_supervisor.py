"""The dashboard's supervisor with real child processes: the real bot (offline simulator market)
for start, stream, commands, stop and adoption; ``fake_bot.py`` where a crash or a stuck process
is needed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from dashboard_helpers import Dashboard, dashboard_environ, read_stream, wait_for
from mraster.dashboard.supervisor import Policy, lock_holder

FAKE = str(ROOT / "tests" / "fake_bot.py")


def offline_env(tmp_path, **extra):
    return dashboard_environ(tmp_path, ASTER_OFFLINE="true", ASTER_SCAN_INTERVAL_SECONDS="1",
                             **extra)


def test_start_stream_commands_and_stop_with_the_real_bot(tmp_path):
    with Dashboard(tmp_path, offline_env(tmp_path)) as d:
        r = d.post("/api/bot/start")
        assert r.status_code == 200 and r.json()["running"] is True
        pid = r.json()["pid"]
        assert d.post("/api/bot/start").status_code == 409  # never a second bot
        events = read_stream(d.url, lambda ev: any(e["event"] == "cycle" for e in ev))
        assert any(e["event"] == "decision" for e in events)
        def opened():  # an open position after a completed cycle (not an entry in flight)
            v = d.get("/api/state").json()
            return v["telemetry"].get("cycle") and any(p["status"] == "open" for p in v["positions"]) and v
        state = wait_for(opened, what="a position")
        status = d.get("/api/bot/status").json()
        assert status["market_source"] == "simulator" and status["paper"] is True
        assert status["pid"] == pid and status["uptime_s"] >= 0
        sym = next(p["symbol"] for p in state["positions"] if p["status"] == "open")
        # close one position through the inbox: acknowledged, booked as manual, no re-entry
        cmd = d.post(f"/api/positions/{sym}/close", {"confirm": sym}).json()["command"]
        ack = wait_for(lambda: next((c["ack"] for c in d.get("/api/state").json()["commands"]["recent"]
                                     if c["id"] == cmd["id"] and c["ack"]), None), what="close ack")
        assert ack["ok"] and f"closed {sym}" in ack["message"]
        after = d.get("/api/state").json()
        assert after["history"][0]["symbol"] == sym and after["history"][0]["reason"] == "manual"
        wait_for(lambda: d.state_file()["stats"]["cycles"] >= state["telemetry"]["cycle"] + 2,
                 what="two more cycles")
        after = d.get("/api/state").json()
        assert sym not in {p["symbol"] for p in after["positions"]}
        assert next(x for x in after["decisions"] if x["symbol"] == sym)["reason"] == "cooldown"
        # flatten: everything closed, entries paused and the pause acknowledged
        d.post("/api/positions/flatten", {"confirm": "FLATTEN"})
        wait_for(lambda: not d.get("/api/state").json()["positions"], what="flat")
        view = wait_for(lambda: (v := d.get("/api/state").json())["commands"]["paused_acknowledged"] and v,
                        what="pause acknowledged")
        assert view["commands"]["paused"] is True
        t0 = time.monotonic()
        r = d.post("/api/bot/stop").json()
        assert time.monotonic() - t0 < 10
        assert r["state"] == "stopped" and r["last_exit_code"] == 0
        assert lock_holder(str(tmp_path / "aster_state.json")) is None


def test_crash_restarts_with_backoff_then_a_crash_loop_stops_and_alerts(tmp_path):
    policy = Policy(backoff_base_s=0.05, backoff_max_s=0.2, loop_crashes=3, loop_window_s=60)
    with Dashboard(tmp_path, offline_env(tmp_path), policy=policy,
                   command=(sys.executable, FAKE, "crash")) as d:
        d.post("/api/bot/start")
        status = wait_for(lambda: (s := d.get("/api/bot/status").json())["state"] == "crash_loop" and s,
                          what="crash loop")
        assert status["restarts"] == 2 and status["last_exit_code"] == 1
        assert "simulated crash" in status["last_exit_reason"]
        alerts = d.get("/api/state").json()["alerts"]
        assert any("crashed 3 times" in a["message"] for a in alerts)
        events = read_stream(d.url, lambda ev: any("crashed 3 times" in e.get("message", "") for e in ev))
        assert sum("restarting in" in e.get("message", "") for e in events) == 2
        # a fresh start resets the count
        assert d.post("/api/bot/start").status_code == 200


def test_a_bot_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    policy = Policy(grace_s=0.5)
    with Dashboard(tmp_path, offline_env(tmp_path), policy=policy,
                   command=(sys.executable, FAKE, "ignore_term")) as d:
        pid = d.post("/api/bot/start").json()["pid"]
        read_stream(d.url, lambda ev: any(e["event"] == "ready" for e in ev))
        r = d.post("/api/bot/stop").json()
        assert r["state"] == "stopped" and r["last_exit_code"] == -signal.SIGKILL
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_invalid_configuration_is_refused_before_starting(tmp_path):
    (tmp_path / "dashboard_config.json").write_text('{"ASTER_LEVERAGE": 999}')
    with Dashboard(tmp_path, offline_env(tmp_path)) as d:
        r = d.post("/api/bot/start")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ASTER_LEVERAGE"
        assert d.get("/api/bot/status").json()["running"] is False


def start_headless_bot(tmp_path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    env.update(offline_env(tmp_path))
    proc = subprocess.Popen([sys.executable, str(ROOT / "aster_multi_bot.py")], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: lock_holder(str(tmp_path / "aster_state.json")) == proc.pid, what="bot lock")
    return proc


def test_a_running_bot_is_adopted_and_no_second_bot_starts(tmp_path):
    proc = start_headless_bot(tmp_path)
    try:
        # a second bot on the same state file refuses to start, and says why
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
        env.update(offline_env(tmp_path, ASTER_RUN_ONCE="true"))
        second = subprocess.run([sys.executable, str(ROOT / "aster_multi_bot.py")], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr
        with Dashboard(tmp_path, offline_env(tmp_path)) as d:
            status = d.get("/api/bot/status").json()
            assert status["state"] == "adopted" and status["pid"] == proc.pid
            assert d.post("/api/bot/start").status_code == 409
            events = read_stream(d.url, lambda ev: any(e["event"] == "cycle" for e in ev))
            assert events  # the adopted bot's events come from its event file
            assert d.post("/api/bot/stop").json()["state"] == "stopped"
            assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_bot_stops_within_ten_seconds_of_sigterm_and_saves_state(tmp_path):
    proc = start_headless_bot(tmp_path)
    try:
        wait_for(lambda: (tmp_path / "aster_state.json").exists() and
                 '"cycles"' in (tmp_path / "aster_state.json").read_text(), what="first cycle")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10
        assert lock_holder(str(tmp_path / "aster_state.json")) is None
    finally:
        if proc.poll() is None:
            proc.kill()
