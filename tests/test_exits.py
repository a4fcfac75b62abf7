"""Stops that lock in profit (breakeven, trailing, FastTP's lock) on real XRPUSDT candles
(tests/data, see SOURCES.md), and the issue's worked example."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from mraster import settings as st
from mraster.market.indicators import atr
from conftest import position
from mraster.strategy.exits import locked_stop

S = st.load(environ={}, env_file=Path("/nonexistent"))


def xrp():
    rows = np.loadtxt(DATA / "XRPUSDT-5m-futures.csv", delimiter=",", skiprows=1)
    return rows[:, 2], rows[:, 3], rows[:, 4]  # high, low, close


def test_fasttp_moves_the_stop_behind_price_not_only_the_target():
    """Long at 100, stop 99, ATR 1; at 100.45 FastTP fires: the stop goes to
    max(entry + 0.05 R, price − 0.25 ATR) = 100.2, so the reversal it saw cannot lose 1 R."""
    pos = {"side": "BUY", "entry": 100.0, "initial_stop": 99.0, "stop": 99.0, "atr": 1.0,
           "take_profit": 101.6}
    assert locked_stop(position(**pos), 100.45, S) is None  # below breakeven's 1 R, no FastTP: unchanged
    stop, rule = locked_stop(position(**pos), 100.45, S, fasttp_fired=True)
    assert rule == "fasttp" and stop == pytest.approx(100.2)
    short = {**pos, "side": "SELL", "initial_stop": 101.0, "stop": 101.0, "take_profit": 98.4}
    stop, _ = locked_stop(position(**short), 99.55, S, fasttp_fired=True)
    assert stop == pytest.approx(99.8)


@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_on_real_candles_the_stop_only_tightens_and_never_passes_price(side):
    high, low, close = xrp()
    a = atr(high, low, close)
    d = 1 if side == "BUY" else -1
    moves, seen_rules, trades = 0, set(), 0
    for start in range(200, len(close) - 300, 48):  # a position opened every 4 hours
        entry, k = close[start], float(a[start])
        pos = position(side=side, entry=entry, initial_stop=entry - d * k, atr=k,
                       take_profit=entry + d * 10 * k)  # a far target: let the stop work
        trades += 1
        for i in range(start + 1, start + 300):
            worst = low[i] if d > 0 else high[i]
            if d * (worst - pos.stop) <= 0:
                break  # stopped out on this candle
            moved = locked_stop(pos, close[i], S)
            if moved is None:
                continue
            new, rule = moved
            assert d * (new - pos.stop) > 0, "a stop only moves toward price"
            assert d * (close[i] - new) >= S["ASTER_STOP_MIN_GAP_ATR"] * k * (1 - 1e-9)
            if rule == "breakeven":
                assert pos.r_at(close[i]) >= S["ASTER_BREAKEVEN_R"]
                assert d * (new - entry) > 0  # past the entry: the fees are covered
            pos.stop = new
            moves += 1
            seen_rules.add(rule)
    assert trades > 20 and moves > 10
    assert seen_rules == {"breakeven", "trailing"}


def test_the_bot_moves_the_stop_order_on_the_exchange(sim_factory, tmp_path):
    """Over HTTP: a position in profit gets its stop moved (breakeven at a low threshold here),
    the exchange's stop order follows (new one placed before the old one goes), and the trade
    is booked with the rule's reason when it closes there."""
    import asyncio
    import json

    from conftest import API_KEY, bot_settings
    from mraster.engine.runner import run_async
    from mraster.execution import ids

    sim, url, _ = sim_factory(n=12, seed=11)
    s = bot_settings(tmp_path, url, ASTER_BREAKEVEN_R=0.2, ASTER_TRAIL_ACTIVATION_R=0)
    moved = []
    for _ in range(12):
        asyncio.run(run_async(s))
        state = json.loads((tmp_path / "aster_state.json").read_text())
        moved = [p for p in state["positions"].values() if p.get("stop_rule") == "breakeven"]
        if moved:
            break
        sim.step(5 * 60_000)
    assert moved, "no position reached 0.2 R in an hour of this market"
    acct = sim.accounts[API_KEY]
    for p in moved:
        d = 1 if p["side"] == "BUY" else -1
        assert d * (p["stop"] - p["entry"]) > 0  # locked in: past the entry
        stops = [o for o in acct.open_orders(p["symbol"]) if ids.bracket_kind(o.to_api()) == "stop"]
        assert len(stops) == 1 and stops[0].stopPrice == pytest.approx(p["stop"], rel=1e-3)
    events = (tmp_path / "events.jsonl").read_text()
    assert '"event": "stop_moved"' in events and '"rule": "breakeven"' in events
    # the protection log names the bot and its rule; moving a stop on plan is no repair (the
    # page said "repaired 5×" for every FastTP and trailing step)
    for p in moved:
        log = [e for e in state["protection_log"] if e["position"] == p["token"]]
        assert any(e["who"] == "bot" and e["what"].startswith("stop moved to ")
                   and e["what"].endswith(" (break-even)") for e in log), log
        assert not [e for e in log if e["who"] == "guard" and "placed" in e["what"]], log
        assert not p["protection"].get("repairs"), p["protection"]
