"""Margin mode and position mode, against the simulator over HTTP."""
from __future__ import annotations

import asyncio
import json

from conftest import API_KEY, bot_settings
from mraster.engine.runner import run_async


def test_the_margin_mode_is_set_before_the_first_entry(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    acct = sim.account(API_KEY)
    assert asyncio.run(run_async(bot_settings(tmp_path, url))) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    traded = {p["symbol"] for p in state["positions"].values()}
    assert traded and all(acct.margin_type.get(sym) == "isolated" for sym in traded)
    rows = {r["symbol"]: r for r in sim.matching.position_risk(acct)}
    assert all(rows[sym]["marginType"] == "isolated" for sym in traded)


def test_crossed_margin_when_the_user_asks_for_it(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    acct = sim.account(API_KEY)
    acct.margin_type = {sym: "isolated" for sym in sim.market.series}
    assert asyncio.run(run_async(bot_settings(tmp_path, url, ASTER_MARGIN_TYPE="crossed"))) == 0
    traded = {p["symbol"] for p in json.loads(
        (tmp_path / "aster_state.json").read_text())["positions"].values()}
    assert traded and all(acct.margin_type[sym] == "cross" for sym in traded)


def test_hedge_mode_is_refused_with_one_line(sim_factory, tmp_path, capsys):
    sim, url, _ = sim_factory(n=12, seed=11)
    sim.account(API_KEY).dual_side = True
    assert asyncio.run(run_async(bot_settings(tmp_path, url))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("aster_multi_bot: the account is in hedge mode")
    assert "One-way" in err[-1]
    assert not sim.accounts[API_KEY].orders
    alerts = json.loads((tmp_path / "aster_state.json").read_text())["alerts"]
    assert any("hedge mode" in a["message"] for a in alerts)
