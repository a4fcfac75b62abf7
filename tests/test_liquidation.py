"""Liquidation: the exchange's formula on a worked example, the simulator liquidating, the bot
never opening a trade whose stop lies beyond its liquidation price, and a liquidation booked as
such (over HTTP)."""
from __future__ import annotations

import asyncio
import json

import pytest

from conftest import API_KEY, bot_settings
from mraster.engine.runner import run_async
from mraster.liquidation import bracket_for, liquidation_price, stop_is_safe


def test_the_formula_matches_the_exchanges_worked_example():
    """aster_api.md's positionRisk example: isolated long 20 BTCUSDT at 6563.665, leverage 10,
    isolatedMargin 15517.54150468 of which 2316.83423560 is unrealised → 5930.78."""
    wallet = 15517.54150468 - 2316.83423560
    assert liquidation_price(1, 6563.665, 20, wallet) == pytest.approx(5930.78, abs=0.01)
    b = bracket_for(20 * 6563.665)
    assert (b.mmr, b.cum) == (0.005, 50.0)
    # the same position short: liquidated above the entry, mirrored by the formula
    short = liquidation_price(-1, 6563.665, 20, wallet)
    assert short == pytest.approx((wallet + 50 + 20 * 6563.665) / (20 * 1.005))
    assert stop_is_safe(1, 100.0, 95.0, 90.0, 0.05) and not stop_is_safe(1, 100.0, 90.2, 90.0, 0.05)


def test_the_bot_lowers_leverage_until_its_stop_comes_before_liquidation(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = bot_settings(tmp_path, url, ASTER_LEVERAGE=125, ASTER_SL_ATR_MULT=8,
                     ASTER_TP_ATR_MULT=12, ASTER_MAX_OPEN_RISK=0.2, ASTER_MAX_TOTAL_NOTIONAL_X=50)
    asyncio.run(run_async(s))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"]
    acct = sim.account(API_KEY)
    rows = {r["symbol"]: r for r in sim.matching.position_risk(acct)}
    lowered = 0
    for p in state["positions"].values():
        row = rows[p["symbol"]]
        liq, lev = float(row["liquidationPrice"]), int(row["leverage"])
        d = 1 if p["side"] == "BUY" else -1
        assert liq > 0 and d * (p["stop"] - liq) > 0.05 * abs(p["entry"] - liq) * 0.99
        lowered += lev < 125
    assert lowered, "a stop 8 ATR away does not fit inside a 125x liquidation price"


def test_a_liquidation_is_booked_as_such_with_an_alert(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = bot_settings(tmp_path, url)
    asyncio.run(run_async(s))
    pos = next(iter(json.loads((tmp_path / "aster_state.json").read_text())["positions"].values()))
    acct, sym = sim.account(API_KEY), pos["symbol"]
    for o in acct.open_orders(sym):  # as if the brackets were gone when the crash came
        o.status = "CANCELED"
    liq = sim.matching.liquidation_price(acct, sym)
    assert liq > 0
    wild = (liq * 0.9, liq * 0.95) if pos["side"] == "BUY" else (liq * 1.05, liq * 1.1)
    order = sim.matching.liquidate(acct, sym, *wild, sim.now())
    assert order is not None and order.type == "LIQUIDATION" and not acct.positions[sym].amt
    asyncio.run(run_async(s))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    (t,) = [t for t in state["history"] if t["symbol"] == sym]
    assert t["reason"] == "liquidation" and t["exit"] == pytest.approx(liq, rel=1e-6)
    assert any("LIQUIDATED" in a["message"] for a in state["alerts"])


def test_a_trade_that_fits_the_caps_only_at_the_leverage_its_stop_needs_is_still_made(sim_factory,
                                                                                      tmp_path):
    """At 125x the stop (8 ATR away) lies beyond the liquidation price and the order, sized by
    risk, is larger than the notional cap (600 USDT) allows; at the lower leverage the stop
    needs, the margin budget (1 % of equity) makes it smaller and it fits. The entry is still
    made there: an order the caps refuse is skipped before anything is set on the exchange
    only when it would go out as planned (its stop clear of the liquidation price)."""
    sim, url, _ = sim_factory(n=12, seed=11)
    s = bot_settings(tmp_path, url, ASTER_LEVERAGE=125, ASTER_SL_ATR_MULT=8, ASTER_TP_ATR_MULT=12,
                     ASTER_MAX_OPEN_RISK=0.2, ASTER_MAX_TOTAL_NOTIONAL_X=0.06,
                     ASTER_EQUITY_FRACTION=0.01, ASTER_RISK_PER_TRADE=0.02)
    asyncio.run(run_async(s))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert state["positions"], state["decisions"]
    for p in state["positions"].values():
        assert p["leverage"] < 125 and p["qty"] * p["entry"] <= 600 * 1.0001
    rows = {r["symbol"]: r for r in sim.matching.position_risk(sim.account(API_KEY))}
    assert all(int(rows[p["symbol"]]["leverage"]) == p["leverage"] for p in state["positions"].values())
