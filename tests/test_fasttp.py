"""FastTP on real XRPUSDT 5m closes: a winner that starts to reverse gets its target pulled in."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, position
from mraster import settings as st
from mraster.sim.market import read_candles_csv
from mraster.strategy.fasttp import fasttp_target

NOW = 2_000_000_000_000


@pytest.fixture(scope="module")
def closes():
    return read_candles_csv(DATA / "XRPUSDT-5m-futures.csv")[4]


def defaults(**over):
    return st.load(environ={k: str(v) for k, v in over.items()}, env_file=Path("/none"))


def first(closes, up: bool):
    """Four real closes ending in a candle that moved at least 0.15% (down, or up)."""
    for i in range(4, len(closes)):
        r = closes[i] / closes[i - 1] - 1
        if (r >= 0.0015) if up else (r <= -0.0015):
            return list(closes[i - 3:i + 1])
    raise AssertionError("no such candle in the data")


def test_a_reversing_long_winner_gets_its_take_profit_pulled_in(closes):
    s = defaults()
    c = first(closes, up=False)
    price, atr = c[-1], c[-1] * 0.004
    pos = {"side": "BUY", "entry": price - 0.5 * atr, "initial_stop": price - 1.5 * atr,
           "take_profit": price + 1.1 * atr, "atr": atr}
    new_tp, facts = fasttp_target(position(**pos), price, c, NOW, s)
    assert new_tp == pytest.approx(price + s["FASTTP_SNAP_ATR"] * atr)
    assert facts["ret1"] <= s["FAST_TP_RET1"] and facts["r"] == pytest.approx(0.5)
    # below FASTTP_MIN_R profit: left alone
    assert fasttp_target(position(**{**pos, "entry": price - 0.1 * atr}), price, c, NOW, s) is None
    # within the cooldown of the last move: left alone
    assert fasttp_target(position(**{**pos, "fasttp_at": NOW - 5_000}), price, c, NOW, s) is None
    assert fasttp_target(position(**{**pos, "fasttp_at": NOW - 16_000}), price, c, NOW, s) is not None
    # never moves the target further away
    assert fasttp_target(position(**{**pos, "take_profit": price + 0.1 * atr}), price, c, NOW, s) is None
    assert fasttp_target(position(**pos), price, c, NOW, defaults(FAST_TP_ENABLED="false")) is None


def test_a_reversing_short_winner_mirrors(closes):
    s = defaults()
    c = first(closes, up=True)
    price, atr = c[-1], c[-1] * 0.004
    pos = {"side": "SELL", "entry": price + 0.5 * atr, "initial_stop": price + 1.5 * atr,
           "take_profit": price - 1.1 * atr, "atr": atr}
    new_tp, _ = fasttp_target(position(**pos), price, c, NOW, s)
    assert new_tp == pytest.approx(price - s["FASTTP_SNAP_ATR"] * atr)
    # the same closes do not trigger a long (the move is in its favour)
    long = {"side": "BUY", "entry": price - 0.5 * atr, "initial_stop": price - 1.5 * atr,
            "take_profit": price + 1.1 * atr, "atr": atr}
    ret3_against = c[-1] / c[0] - 1 <= s["FAST_TP_RET3"]
    assert (fasttp_target(position(**long), price, c, NOW, s) is None) == (not ret3_against)


def test_the_engine_applies_an_ai_plans_fasttp_overrides(closes):
    """The user switched FastTP off; the AI plan switched it on for this trade (it only takes
    profit earlier), with a lower profit threshold."""
    import asyncio

    import numpy as np

    from mraster.engine.cycle import Engine
    from mraster.strategy.filters import Snapshot
    from mraster.strategy.signals import Candles

    s = defaults(FAST_TP_ENABLED="false")
    c = first(closes, up=False)
    price, atr = c[-1], c[-1] * 0.004
    pos = {"symbol": "XRPUSDT", "side": "BUY", "status": "open", "entry": price - 0.15 * atr,
           "qty": 1.0, "opened_at": 0,
           "initial_stop": price - 1.15 * atr, "stop": price - 1.15 * atr,
           "take_profit": price + 1.1 * atr, "atr": atr}
    arr = np.array(c, dtype=float)
    candles = {"XRPUSDT": (Candles(np.arange(4), arr, arr, arr, arr, arr), None)}
    snaps = {"XRPUSDT": Snapshot(bid=price, ask=price, quote_volume=1e9, mark=price, index=price,
                                 funding=0.0)}

    def manage(p):
        eng = Engine(None, s, {"positions": {"t": p}}, None, lambda *a, **k: None)
        asyncio.run(eng._manage(candles, snaps, NOW))
        return eng.state["positions"]["t"].take_profit
    assert manage(dict(pos)) == pos["take_profit"]  # the user's setting: off
    moved = manage({**pos, "fasttp": {"enabled": True, "min_r": 0.1}})
    assert moved == pytest.approx(price + s["FASTTP_SNAP_ATR"] * atr)
