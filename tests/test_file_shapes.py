"""Valid JSON with the wrong shape, and malformed exchange answers: set aside or treated as an
exchange error, never a crash (real bot process, real dashboard over HTTP)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, bot_settings
from dashboard_helpers import Dashboard, dashboard_environ
from fault_proxy import FaultProxy, Rule

BAD_STATES = {
    "positions as a list": {"positions": [1, 2]},
    "a position without opened_at": {"positions": {"abc-1f2e": {
        "symbol": "BTCUSDT", "side": "BUY", "status": "open", "qty": 1, "entry": 1,
        "initial_stop": 0.9, "stop": 0.9, "take_profit": 1.2}}},
    "commands as a number": {"commands": 3},
    "a position whose protection is a list": {"positions": {"abc-1f2e": {
        "symbol": "BTCUSDT", "side": "BUY", "status": "open", "qty": 1, "entry": 1,
        "opened_at": 1, "initial_stop": 0.9, "stop": 0.9, "take_profit": 1.2,
        "protection": [1, 2]}}},
}


def run_bot(settings, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTER_")}
    env.update(settings.to_env())
    return subprocess.run([sys.executable, str(ROOT / "aster_multi_bot.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("what", list(BAD_STATES))
def test_a_state_file_of_the_wrong_shape_is_set_aside_and_the_bot_runs(sim_factory, tmp_path,
                                                                       what):
    sim, url, _ = sim_factory(n=6, seed=11)
    (tmp_path / "aster_state.json").write_text(json.dumps(BAD_STATES[what]))
    (tmp_path / "brackets_queue.json").write_text(json.dumps({"items": [1, 2]}))
    p = run_bot(bot_settings(tmp_path, url), tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(list(tmp_path.glob("aster_state.json.corrupt-*"))) == 1
    assert len(list(tmp_path.glob("brackets_queue.json.corrupt-*"))) == 1
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["stats"]["cycles"] == 1


def test_the_dashboard_serves_the_page_over_a_state_file_of_the_wrong_shape(tmp_path):
    (tmp_path / "aster_state.json").write_text(json.dumps({"positions": [1, 2], "ui": []}))
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        r = d.get("/api/state")
        assert r.status_code == 200
        assert any("aster_state.json could not be read" in a["message"] for a in r.json()["alerts"])
        assert d.put("/api/ui", {"chart_symbol": "BTCUSDT"}).status_code == 200


def test_a_malformed_exchange_answer_is_an_exchange_error_not_a_crash(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=6, seed=11)
    with FaultProxy(url) as proxy:
        proxy.set_rules(Rule("GET", "/fapi/v2/positionRisk", mangle=1.0))
        p = run_bot(bot_settings(tmp_path, proxy.url), tmp_path)
    assert "Traceback" not in p.stderr and "KeyError" not in p.stderr, p.stderr[-2000:]
    assert p.returncode == 1  # the one scan failed; said in one alert, nothing crashed
    alerts = json.loads((tmp_path / "aster_state.json").read_text())["alerts"]
    assert any("malformed answer" in a["message"] and "positionAmt" in a["message"]
               for a in alerts), alerts
